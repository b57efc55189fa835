/**
 * Frameworks are optional peer dependencies: importing `sockgate` or one
 * adapter must not load any framework, nor any framework's static server.
 * Each check imports the module in a fresh Node process and lists the
 * packages whose files Node then loaded. (Every framework here is CommonJS
 * underneath, koa's ESM entry included, so each file it loads lands in the
 * CommonJS module cache.)
 */
import { execFile } from 'node:child_process'
import { test } from 'node:test'
import assert from 'node:assert/strict'

const WATCHED = ['express', 'koa', 'fastify', 'serve-static', 'koa-send', '@fastify/static']
const root = new URL('../../', import.meta.url)

/** The watched packages a fresh process has loaded after running `code` (an ES module body). */
function packagesLoadedBy (code: string): Promise<string[]> {
  const script = `${code}
const { createRequire } = await import('node:module')
process.stdout.write(JSON.stringify(Object.keys(createRequire(process.cwd() + '/').cache)))`
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root }, (err, stdout, stderr) => {
      if (err !== null) return reject(new Error(`${err.message}\n${stderr}`))
      const files = JSON.parse(stdout) as string[]
      resolve(WATCHED.filter((name) => files.some((file) => file.includes(`/node_modules/${name}/`))))
    })
  })
}

const importOf = (path: string): string => `await import(${JSON.stringify(new URL(path, root).href)})`

test('isolation: the check sees a framework that is imported', async () => {
  assert.deepEqual(await packagesLoadedBy("await import('koa')"), ['koa'])
})

for (const [name, path] of [
  ['sockgate', 'src/index.ts'],
  ['sockgate/express', 'adapters/express.ts'],
  ['sockgate/koa', 'adapters/koa.ts'],
  ['sockgate/fastify', 'adapters/fastify.ts'],
] as const) {
  test(`isolation: importing ${name} loads no framework and no static server`, async () => {
    assert.deepEqual(await packagesLoadedBy(importOf(path)), [])
  })
}

test('isolation: express assets() loads serve-static, and nothing of koa or fastify', async () => {
  const code = `const { assets } = ${importOf('adapters/express.ts')}\nassets(${JSON.stringify(new URL('test/fixtures/www/assets', root).pathname)})`
  assert.deepEqual(await packagesLoadedBy(code), ['serve-static'])
})

test('isolation: koa assets() loads koa-send, and nothing of express or fastify', async () => {
  const code = `const { assets } = ${importOf('adapters/koa.ts')}\nassets('/assets', ${JSON.stringify(new URL('test/fixtures/www/assets', root).pathname)})`
  assert.deepEqual(await packagesLoadedBy(code), ['koa-send'])
})
