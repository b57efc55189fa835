/**
 * One workload across its targets. Load workloads start a fresh copy of every
 * proxy, run the rounds interleaved (A B C, A B C, ...) and stop the proxies;
 * the idle workload starts a fresh proxy for each measurement.
 */
import { join } from 'node:path'
import type { NodeChild } from './children.js'
import { machineBusySeconds, median } from './measure.js'
import type { BenchOptions } from './options.js'
import { summarize, type WindowResult, type WorkloadResult } from './report.js'
import { startTarget, type Target } from './targets.js'
import { measureIdle } from './workloads/idle.js'
import type { IdleWorkload, LoadWorkload, Session, Workload } from './workloads/types.js'
import { sleep } from './workloads/wait.js'

/** Pause between windows so the previous target's closing sockets don't land in the next window. */
const SETTLE_MS = 100

export interface RunContext {
  options: BenchOptions
  upstream: NodeChild
  upstreamPort: number
  /** Targets known not to start, with the reason; filled as they fail, shared by all workloads. */
  unavailable: Record<string, string>
  /** Proxies currently running, so that Ctrl-C and the watchdog can stop them. */
  running: Set<Target>
  progress: (text: string) => void
}

export function errorText (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/**
 * Lets the session run for the warm-up, then counts operations and reads CPU
 * over the window. With `--cpu-prof`, a Node proxy is profiled over exactly
 * that window and the profile written to `profileFile`.
 */
async function measureWindow (session: Session, target: Target, ctx: RunContext, warmup: number, profileFile: string | undefined): Promise<Omit<WindowResult, 'round' | 'target'>> {
  await sleep(warmup * 1000)
  const profiled = profileFile !== undefined && target.profile !== undefined
  if (profiled) await target.profile!('start')
  const [p0, u0] = await Promise.all([target.stats?.(), ctx.upstream.stats()])
  const m0 = machineBusySeconds()
  const c0 = process.cpuUsage()
  const ops0 = session.ops
  const errors0 = session.errors
  const t0 = performance.now()
  await sleep(ctx.options.seconds * 1000)
  const ops = session.ops - ops0
  const errors = session.errors - errors0
  const seconds = (performance.now() - t0) / 1000
  const client = process.cpuUsage(c0)
  const m1 = machineBusySeconds()
  const [p1, u1] = await Promise.all([target.stats?.(), ctx.upstream.stats()])
  if (profiled) await target.profile!('stop', profileFile)
  if (ops === 0) return { failed: `no operation completed (${errors} errors)` }
  const clientCpuSeconds = (client.user + client.system) / 1e6
  const proxyCpuSeconds = p0 && p1 ? (p1.cpuUs - p0.cpuUs) / 1e6 : 0
  const upstreamCpuSeconds = (u1.cpuUs - u0.cpuUs) / 1e6
  return {
    seconds,
    ops,
    errors,
    rate: ops / seconds,
    cpuSeconds: p0 && p1 ? proxyCpuSeconds : undefined,
    maxRss: p1?.maxRss,
    upstreamCpuSeconds,
    upstreamAccepted: (u1.accepted ?? 0) - (u0.accepted ?? 0),
    clientCpuSeconds,
    // Cores' worth of CPU that other programs on the machine used during the window.
    otherCores: Math.max(0, (m1 - m0 - clientCpuSeconds - proxyCpuSeconds - upstreamCpuSeconds) / seconds),
  }
}

async function measureLoad (workload: LoadWorkload, target: Target, round: number, ctx: RunContext): Promise<WindowResult> {
  const { options } = ctx
  const warmup = options.warmup + (round === 1 ? options.firstWarmup : 0)
  // The session stops itself 30 s after its window should have ended, should stop() never come.
  const limits = { ...workload.limits, maxMs: Math.min(workload.limits.maxMs, (warmup + options.seconds) * 1000 + 30_000) }
  const began = performance.now()
  let session: Session
  try {
    session = await workload.start(target.port, limits)
  } catch (err) {
    return { round, target: target.name, failed: `start: ${errorText(err)}` }
  }
  const setupMs = performance.now() - began
  let figures: Omit<WindowResult, 'round' | 'target'>
  try {
    const profileFile = options.cpuProf === undefined ? undefined : join(options.cpuProf, `${workload.name}-${target.name}-r${round}.cpuprofile`)
    figures = await measureWindow(session, target, ctx, warmup, profileFile)
  } catch (err) {
    figures = { failed: errorText(err) }
  }
  const stopping = performance.now()
  await session.stop()
  return { round, target: target.name, ...figures, setupMs, teardownMs: performance.now() - stopping }
}

/** Starts targets in parallel; the ones that fail are recorded as unavailable for the rest of the run. */
async function startTargets (names: string[], ctx: RunContext): Promise<Target[]> {
  const started = await Promise.all(names.map((name) => startTarget(name, ctx.upstreamPort)))
  const targets: Target[] = []
  for (const s of started) {
    if (s.ok) {
      targets.push(s.target)
      ctx.running.add(s.target)
    } else {
      // A kind that cannot start now would not start for the next workload either.
      ctx.unavailable[s.name] = s.reason
    }
  }
  return targets
}

async function stopTargets (targets: Target[], ctx: RunContext): Promise<void> {
  await Promise.allSettled(targets.map((t) => t.stop()))
  targets.forEach((t) => ctx.running.delete(t))
}

/** Load workloads: one fresh copy of each proxy for the whole workload, rounds interleaved. */
async function runLoadRounds (workload: LoadWorkload, targets: Target[], ctx: RunContext): Promise<WindowResult[]> {
  const windows: WindowResult[] = []
  for (let round = 1; round <= ctx.options.rounds; round++) {
    for (const target of targets) {
      ctx.progress(`${workload.name}: round ${round}/${ctx.options.rounds}, ${target.name}`)
      windows.push(await measureLoad(workload, target, round, ctx))
      await sleep(SETTLE_MS)
    }
  }
  return windows
}

/**
 * Idle workload: every measurement gets a proxy process of its own, started
 * just before it. In a process that already held (and freed) tunnels the
 * heap reuses that memory and the growth comes out too small, differently
 * each round; a fresh process makes the rounds repeat the same measurement.
 */
async function runIdleRounds (workload: IdleWorkload, names: string[], ctx: RunContext): Promise<WindowResult[]> {
  const windows: WindowResult[] = []
  for (let round = 1; round <= ctx.options.rounds; round++) {
    for (const name of names.filter((n) => !(n in ctx.unavailable))) {
      ctx.progress(`${workload.name}: round ${round}/${ctx.options.rounds}, ${name}`)
      const [target] = await startTargets([name], ctx)
      if (!target) continue
      try {
        windows.push(await measureIdleRound(target, round, ctx))
      } finally {
        await stopTargets([target], ctx)
      }
    }
  }
  return windows
}

async function measureIdleRound (target: Target, round: number, ctx: RunContext): Promise<WindowResult> {
  if (!target.stats) return { round, target: target.name, failed: 'not a proxy (no process of its own to measure)' }
  try {
    const result = await measureIdle(target.port, target.stats, ctx.options.tunnels)
    const after = await target.stats()
    return { round, target: target.name, bytesPerTunnel: result.bytesPerTunnel, rssBefore: result.rssBefore, rssAfter: result.rssAfter, maxRss: after.maxRss }
  } catch (err) {
    return { round, target: target.name, failed: errorText(err) }
  }
}

/** Runs every round of one workload and summarises it. Never throws for a target's failure. */
export async function runWorkload (workload: Workload, ctx: RunContext): Promise<WorkloadResult> {
  const { options, unavailable } = ctx
  // `direct` has no process of its own, so it has no idle RSS to show.
  const names = options.targets.filter((name) => !(name in unavailable) && !(workload.kind === 'idle' && name === 'direct'))
  const began = performance.now()
  let windows: WindowResult[]
  let ran: string[]
  let startMs = 0
  if (workload.kind === 'idle') {
    windows = await runIdleRounds(workload, names, ctx)
    ran = names.filter((n) => windows.some((w) => w.target === n))
  } else {
    ctx.progress(`${workload.name}: starting ${names.join(', ')}`)
    const targets = await startTargets(names, ctx)
    startMs = performance.now() - began
    try {
      windows = await runLoadRounds(workload, targets, ctx)
    } finally {
      await stopTargets(targets, ctx)
    }
    ran = targets.map((t) => t.name)
  }
  return {
    name: workload.name,
    title: workload.title,
    unit: workload.kind === 'idle' ? 'bytes/tunnel' : workload.unit,
    goals: workload.kind === 'idle' ? { bytesPerTunnel: workload.budgetBytes } : workload.goals,
    seconds: (performance.now() - began) / 1000,
    startMs,
    otherCores: median(windows.map((w) => w.otherCores ?? NaN)),
    unavailable: Object.fromEntries(options.targets.filter((n) => n in unavailable).map((n) => [n, unavailable[n]!])),
    windows,
    summary: summarize(workload, ran, windows),
  }
}
