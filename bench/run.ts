/**
 * sockgate benchmark: sockgate next to a direct connection, nginx (when
 * installed), http-proxy-middleware on Express and node-http-proxy, in one run.
 *
 *   npm run bench                      default run, about 5 minutes
 *   npm run bench -- --quick           about a minute
 *   npm run bench -- --only=ws-echo --targets=direct,nginx,sockgate
 *
 * READ THIS BEFORE READING THE NUMBERS. The load generator, the proxy and the
 * upstream share the same 2 cores. With a proxy in the path three busy
 * processes compete for two cores; with `direct` only two do. Throughput
 * ratios to direct are therefore capped well below 1 by the machine, not only
 * by the proxy, and they move by about ±0.15 between runs. The figure to steer
 * by is the proxy's own CPU seconds per 100k operations (and its RSS), which
 * is measured on the proxy process alone and does not depend on how the
 * scheduler shared the cores.
 *
 * Process layout:
 * - one child runs every upstream (bench/upstreams.ts): ws echo, HTTP, Socket.IO;
 * - each proxy runs in its own child (bench/proxies/child.ts, or nginx itself),
 *   started afresh for each workload so its peak RSS belongs to that workload;
 *   Node children report process.cpuUsage() and RSS over IPC, nginx's worker
 *   is read from /proc;
 * - the load generator runs here, in the main process. The orchestration work
 *   here is idle while a window runs (two IPC stats calls per window), so a
 *   separate load child would only add a process; on 2 cores there is no spare
 *   core to keep the client off the proxy's core either way.
 *
 * Targets run interleaved (A B C, A B C, ...) so slow drift of the machine
 * hits every target alike; each table shows medians over the rounds.
 * Every load loop is bounded in operations and in time, every server listens
 * on 127.0.0.1 port 0, and only processes started here are ever stopped.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import os from 'node:os'
import { startNodeChild, type NodeChild } from './children.js'
import { parseOptions, USAGE, type BenchOptions } from './options.js'
import { findNginx } from './proxies/nginx.js'
import { formatTable, type WorkloadResult } from './report.js'
import { errorText, runWorkload } from './rounds.js'
import type { Target } from './targets.js'
import { WORKLOADS } from './workloads/index.js'

/** The whole run stops itself past this, whatever is hanging. */
const WATCHDOG_MS = 20 * 60_000

const running = new Set<Target>()
let upstream: NodeChild | undefined

async function stopEverything (): Promise<void> {
  await Promise.allSettled([...running].map((t) => t.stop()))
  running.clear()
  await upstream?.stop()
}

function nginxVersion (): string | undefined {
  const bin = findNginx()
  if (!bin) return undefined
  // nginx prints its version on stderr.
  const { stdout, stderr } = spawnSync(bin, ['-v'], { encoding: 'utf8', timeout: 5_000 })
  return `${stdout ?? ''}${stderr ?? ''}`.trim().replace(/^nginx version: /, '') || bin
}

/** One-line progress on a terminal; nothing when the output goes to a file. */
function progress (text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r${text.padEnd(70)}\r`)
}

function version (name: string): string {
  try {
    const path = fileURLToPath(new URL(`../node_modules/${name}/package.json`, import.meta.url))
    return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version
  } catch {
    return '?'
  }
}

async function main (): Promise<void> {
  let options: BenchOptions | undefined
  try {
    options = parseOptions(process.argv.slice(2))
  } catch (err) {
    console.error(errorText(err))
    process.exitCode = 2
    return
  }
  if (!options) {
    console.log(USAGE)
    return
  }
  const watchdog = setTimeout(() => {
    console.error(`\nwatchdog: the run took over ${WATCHDOG_MS / 60_000} minutes; stopping it`)
    stopEverything().finally(() => process.exit(3))
  }, WATCHDOG_MS)
  const onSignal = (): void => { stopEverything().finally(() => process.exit(130)) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  const began = Date.now()
  const nginx = nginxVersion()
  const rounds = `${options.rounds} round${options.rounds === 1 ? '' : 's'} x ${options.seconds} s windows`
  console.log(`sockgate bench: node ${process.version}, ${os.cpus().length} cores, ${rounds}${options.quick ? ' (--quick: a smoke test, figures are rough)' : ''}`)
  console.log(`nginx: ${nginx ?? 'not installed, skipped (apt-get install -y nginx-light to include it)'}`)
  console.log('Client, proxy and upstream share this machine\'s cores: ratios to direct are capped; steer by proxy CPU per 100k ops.')
  const loadAtStart = os.loadavg()
  const load = loadAtStart[0]!
  if (load > os.cpus().length / 2) console.log(`note: load average is ${load.toFixed(1)} before starting; other work on this machine will add noise`)
  console.log('')

  if (options.cpuProf !== undefined) {
    mkdirSync(options.cpuProf, { recursive: true })
    console.log(`note: --cpu-prof: Node proxies are profiled in their measured windows (profiles in ${options.cpuProf}); their CPU figures include the profiler`)
  }
  const up = await startNodeChild(fileURLToPath(new URL('./upstreams.ts', import.meta.url)), [])
  if (!up.ok) {
    console.error(`upstream child failed: ${up.reason}`)
    process.exitCode = 1
    clearTimeout(watchdog)
    return
  }
  upstream = up.child

  const ctx = { options, upstream: up.child, upstreamPort: up.port, unavailable: {}, running, progress }
  const results: WorkloadResult[] = []
  try {
    for (const workload of WORKLOADS.filter((w) => options.workloads.includes(w.name))) {
      const result = await runWorkload(workload, ctx)
      results.push(result)
      progress('')
      console.log(formatTable(workload, result.summary, result.unavailable, result.otherCores) + '\n')
    }
  } finally {
    await stopEverything()
    clearTimeout(watchdog)
  }

  const dir = fileURLToPath(new URL('./results/', import.meta.url))
  mkdirSync(dir, { recursive: true })
  const file = `${dir}${new Date(began).toISOString().replace(/[:.]/g, '-')}.json`
  writeFileSync(file, JSON.stringify({
    startedAt: new Date(began).toISOString(),
    seconds: (Date.now() - began) / 1000,
    machine: { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, platform: `${os.platform()} ${os.release()}` },
    versions: { nginx, ws: version('ws'), 'socket.io': version('socket.io'), 'http-proxy-middleware': version('http-proxy-middleware'), 'http-proxy': version('http-proxy'), undici: version('undici') },
    loadAverageAtStart: loadAtStart,
    options,
    workloads: results,
  }, null, 2) + '\n')
  console.log(`raw results: ${file} (run took ${Math.round((Date.now() - began) / 1000)} s)`)
  if (options.balance) {
    // The balancing methods compared with each other (issue 4), in their own processes.
    console.log('\nbalancing methods, 3 upstreams (bench/balance.ts):')
    spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./balance.ts', import.meta.url)), ...(options.quick ? ['--quick'] : [])], { stdio: 'inherit' })
  }
  // Everything started here is stopped; should a client library still hold a
  // handle (a timer, a half-closed socket), don't let it hold the terminal too.
  setTimeout(() => process.exit(), 2_000).unref()
}

await main()
