/**
 * The package as users get it (issue 8): `npm pack`, installed into a scratch
 * project from the tarball, then used the way the README and
 * docs/getting-started.md say, with no help from this checkout's sources.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { readmeExamples, roundTrips, scratchProject, socketIoNodes, startExample, withUpstreams } from './helpers/examples.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const run = promisify(execFile)
/**
 * `npm test` runs this file from an npm script, whose environment describes that run
 * (npm_config_local_prefix is this checkout): keep those variables from the npm commands
 * run here, and keep the user's own configuration (cache, registry, CA file).
 */
const PARENT_RUN = /^(npm_config_(local_prefix|call)|npm_package_.*|npm_lifecycle_.*|npm_command|INIT_CWD)$/
const npmEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !PARENT_RUN.test(name)))

function npm (cwd: string, args: string[]): Promise<{ stdout: string }> {
  return run('npm', args, { cwd, env: npmEnv, maxBuffer: 16 * 1024 * 1024 })
}

/** The version of a package this checkout has installed, so npm can take it from its cache. */
async function installedVersion (name: string): Promise<string> {
  const manifest = JSON.parse(await readFile(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }
  return manifest.version
}

test('package: installed from its tarball, it runs the README and CommonJS examples', async (t) => {
  const dir = await scratchProject(t)
  const { stdout } = await npm(ROOT, ['pack', '--pack-destination', dir, '--json'])
  const [packed] = JSON.parse(stdout) as Array<{ filename: string, files: Array<{ path: string }> }>
  assert.ok(packed !== undefined, `npm pack said nothing about its tarball: ${stdout}`)
  // docs/express.md's install line, minus socket.io (the upstreams and the client run in this process).
  await npm(dir, [
    'install', '--prefer-offline', '--no-audit', '--no-fund', '--no-package-lock', '--ignore-scripts',
    path.join(dir, packed.filename), `express@${await installedVersion('express')}`, `serve-static@${await installedVersion('serve-static')}`,
  ])

  await t.test('the tarball ships dist/, LICENSE and README.md, and no source maps', () => {
    const files = packed.files.map((f) => f.path)
    for (const file of ['LICENSE', 'README.md', 'package.json', 'dist/src/index.js', 'dist/src/index.d.ts']) {
      assert.ok(files.includes(file), `${file} is missing from the tarball`)
    }
    assert.deepEqual(files.filter((f) => !/^(dist\/.+\.(js|d\.ts)|LICENSE|README\.md|package\.json)$/.test(f)), [])
  })

  await t.test("the README's Express example carries Socket.IO through the installed package", async (t) => {
    const example = readmeExamples(await readFile(path.join(ROOT, 'README.md'), 'utf8')).find((e) => /Express/.test(e.name))
    assert.ok(example !== undefined, 'the README has no Express example')
    assert.equal(createRequire(path.join(dir, 'package.json')).resolve('sockgate/express'),
      path.join(dir, 'node_modules', 'sockgate', 'dist', 'adapters', 'express.js'))
    const nodes = await socketIoNodes(t, 2)
    const url = await startExample(t, dir, withUpstreams(example.code, nodes.map((n) => n.url)))
    const { nodes: acked, transport } = await roundTrips(t, url, 'default', 3)
    assert.equal(new Set(acked).size, 1)
    assert.ok(nodes.some((n) => n.name === acked[0]), `acked by ${acked[0]}, not a test upstream`)
    assert.equal(transport, 'websocket')
  })

  await t.test('a CommonJS TypeScript project with module nodenext compiles against it and require()s it', async () => {
    // docs/getting-started.md, "From a CommonJS project": a package.json without "type" is CommonJS.
    const cjs = path.join(dir, 'cjs')
    await mkdir(cjs)
    await writeFile(path.join(cjs, 'package.json'), JSON.stringify({ name: 'cjs-example', private: true }))
    await writeFile(path.join(cjs, 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        module: 'nodenext',
        target: 'ES2022',
        strict: true,
        skipLibCheck: true,
        outDir: 'out',
        types: ['node'],
        typeRoots: [path.join(ROOT, 'node_modules', '@types')],
      },
      files: ['index.ts'],
    }))
    await writeFile(path.join(cjs, 'index.ts'), [
      "import { createGateway } from 'sockgate'",
      "import { sockgate } from 'sockgate/express'",
      "import sockgatePlugin from 'sockgate/fastify'",
      "import { startCluster } from 'sockgate/cluster'",
      "const gateway = createGateway({ target: 'http://127.0.0.1:5001' })",
      'console.log(JSON.stringify([typeof sockgate(gateway), typeof sockgatePlugin, typeof startCluster]))',
      'void gateway.close()',
      '',
    ].join('\n'))
    await run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', cjs])
    const compiled = await readFile(path.join(cjs, 'out', 'index.js'), 'utf8')
    assert.match(compiled, /require\("sockgate"\)/, 'compiled to CommonJS')
    const { stdout } = await run(process.execPath, [path.join(cjs, 'out', 'index.js')], { cwd: cjs })
    assert.deepEqual(JSON.parse(stdout), ['function', 'function', 'function'])
  })
})
