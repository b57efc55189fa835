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
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import os from 'node:os'
import { startNodeChild, type NodeChild } from './children.js'
import { parseOptions, USAGE, type BenchOptions } from './options.js'
import { findNginx } from './proxies/nginx.js'
import { formatTable, summarize, type WindowResult, type WorkloadResult } from './report.js'
import { startTarget, type Target } from './targets.js'
import { measureIdle } from './workloads/idle.js'
import { WORKLOADS } from './workloads/index.js'
import type { IdleWorkload, LoadWorkload, Workload } from './workloads/types.js'

/** Pause between windows so the previous target's closing sockets don't land in the next window. */
const SETTLE_MS = 150
/** The whole run stops itself past this, whatever is hanging. */
const WATCHDOG_MS = 20 * 60_000

const running = new Set<Target>()
let upstream: NodeChild | undefined

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

function errorText (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

async function stopEverything (): Promise<void> {
  await Promise.allSettled([...running].map((t) => t.stop()))
  running.clear()
  await upstream?.stop()
}

async function measureLoad (workload: LoadWorkload, target: Target, round: number, options: BenchOptions): Promise<WindowResult> {
  const limits = { ...workload.limits, maxMs: Math.min(workload.limits.maxMs, (options.warmup + options.seconds) * 1000 + 30_000) }
  let session
  try {
    session = await workload.start(target.port, limits)
  } catch (err) {
    return { round, target: target.name, failed: `start: ${errorText(err)}` }
  }
  try {
    await sleep(options.warmup * 1000)
    const [p0, u0] = await Promise.all([target.stats?.(), upstream!.stats()])
    const ops0 = session.ops
    const errors0 = session.errors
    const t0 = performance.now()
    await sleep(options.seconds * 1000)
    const ops1 = session.ops
    const errors1 = session.errors
    const t1 = performance.now()
    const [p1, u1] = await Promise.all([target.stats?.(), upstream!.stats()])
    const seconds = (t1 - t0) / 1000
    const ops = ops1 - ops0
    if (ops === 0) return { round, target: target.name, failed: `no operation completed (${errors1 - errors0} errors)` }
    return {
      round,
      target: target.name,
      seconds,
      ops,
      errors: errors1 - errors0,
      rate: ops / seconds,
      cpuSeconds: p0 && p1 ? (p1.cpuUs - p0.cpuUs) / 1e6 : undefined,
      maxRss: p1?.maxRss,
      upstreamCpuSeconds: (u1.cpuUs - u0.cpuUs) / 1e6,
      upstreamAccepted: (u1.accepted ?? 0) - (u0.accepted ?? 0),
    }
  } catch (err) {
    return { round, target: target.name, failed: errorText(err) }
  } finally {
    await session.stop()
  }
}

async function measureIdleRound (workload: IdleWorkload, target: Target, round: number, options: BenchOptions): Promise<WindowResult> {
  if (!target.stats) return { round, target: target.name, failed: 'not a proxy (no process of its own to measure)' }
  try {
    const result = await measureIdle(target.port, target.stats, options.tunnels)
    const after = await target.stats()
    return { round, target: target.name, bytesPerTunnel: result.bytesPerTunnel, maxRss: after.maxRss }
  } catch (err) {
    return { round, target: target.name, failed: errorText(err) }
  }
}

async function runWorkload (workload: Workload, options: BenchOptions, known: Record<string, string>, upstreamPort: number): Promise<WorkloadResult> {
  const names = options.targets.filter((name) => !(name in known) && !(workload.kind === 'idle' && name === 'direct'))
  const started = await Promise.all(names.map((name) => startTarget(name, upstreamPort)))
  const targets: Target[] = []
  for (const s of started) {
    if (s.ok) {
      targets.push(s.target)
      running.add(s.target)
    } else {
      // A kind that cannot start now would not start for the next workload either.
      known[s.name] = s.reason
    }
  }
  const windows: WindowResult[] = []
  try {
    for (let round = 1; round <= options.rounds; round++) {
      for (const target of targets) {
        windows.push(workload.kind === 'load'
          ? await measureLoad(workload, target, round, options)
          : await measureIdleRound(workload, target, round, options))
        await sleep(SETTLE_MS)
      }
      process.stdout.write(`  ${workload.name}: round ${round}/${options.rounds} done\r`)
    }
  } finally {
    await Promise.allSettled(targets.map((t) => t.stop()))
    targets.forEach((t) => running.delete(t))
  }
  const unavailable = Object.fromEntries(options.targets.filter((n) => n in known).map((n) => [n, known[n]!]))
  return {
    name: workload.name,
    title: workload.title,
    unit: workload.kind === 'idle' ? 'bytes/tunnel' : workload.unit,
    budget: workload.kind === 'idle' ? workload.budgetBytes : workload.cpuBudget,
    unavailable,
    windows,
    summary: summarize(workload, targets.map((t) => t.name), windows),
  }
}

function nginxVersion (): string | undefined {
  const bin = findNginx()
  if (!bin) return undefined
  try {
    // nginx prints its version on stderr.
    return execFileSync(bin, ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim() || undefined
  } catch (err) {
    return (err as { stderr?: string }).stderr?.trim()
  }
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
  console.log(`sockgate bench: node ${process.version}, ${os.cpus().length} cores, ${options.rounds} rounds x ${options.seconds} s windows`)
  console.log(`nginx: ${nginx ?? 'not installed, skipped (apt-get install -y nginx-light to include it)'}`)
  console.log('Client, proxy and upstream share this machine\'s cores: ratios to direct are capped; steer by proxy CPU per 100k ops.\n')

  const up = await startNodeChild(fileURLToPath(new URL('./upstreams.ts', import.meta.url)), [])
  if (!up.ok) {
    console.error(`upstream child failed: ${up.reason}`)
    process.exitCode = 1
    clearTimeout(watchdog)
    return
  }
  upstream = up.child

  const known: Record<string, string> = {}
  const results: WorkloadResult[] = []
  try {
    for (const workload of WORKLOADS.filter((w) => options.workloads.includes(w.name))) {
      const result = await runWorkload(workload, options, known, up.port)
      results.push(result)
      process.stdout.write(' '.repeat(60) + '\r')
      console.log(formatTable(workload, result.summary, result.unavailable) + '\n')
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
    options,
    workloads: results,
  }, null, 2) + '\n')
  console.log(`raw results: ${file} (run took ${Math.round((Date.now() - began) / 1000)} s)`)
}

await main()
