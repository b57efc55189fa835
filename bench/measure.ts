/**
 * Resource figures of one process, and the small IPC protocol that carries them.
 *
 * Node children (the upstreams and every proxy but nginx) call `serveStats()`:
 * the parent sends `{ id, cmd }` and gets back `{ id, stats }`. nginx is not a
 * Node process, so `readProcStats()` reads the same figures from /proc.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { Session } from 'node:inspector/promises'
import { getHeapSpaceStatistics } from 'node:v8'

/** What a process has used so far. */
export interface ProcStats {
  /** User + system CPU time since the process started, in microseconds. */
  cpuUs: number
  /** Resident set size now, in bytes. */
  rss: number
  /** Peak resident set size since the process started, in bytes. */
  maxRss: number
  /** TCP connections the process has accepted (upstream child only). */
  accepted?: number
  /** Bytes of V8's young generation resident in memory now (Node processes only). */
  youngGen?: number
}

/** Messages a child sends on its own. */
export type ChildEvent =
  | { type: 'ready', port: number }
  | { type: 'unavailable', reason: string }

/**
 * A request from the parent: `stats`, or `gc` (collect garbage, then stats);
 * `profile-start` and `profile-stop` (with `file`) bracket a CPU profile of
 * the child written to `file` (the bench's `--cpu-prof`), answered with stats.
 */
export interface StatsRequest { id: number, cmd: 'stats' | 'gc' | 'profile-start' | 'profile-stop', file?: string }
export interface StatsReply { id: number, stats: ProcStats }

/** Figures of the current Node process. */
export function ownStats (accepted?: number): ProcStats {
  const cpu = process.cpuUsage()
  return {
    cpuUs: cpu.user + cpu.system,
    rss: process.memoryUsage.rss(),
    // resourceUsage().maxRSS is in KiB on Linux.
    maxRss: process.resourceUsage().maxRSS * 1024,
    accepted,
    youngGen: getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.physical_space_size,
  }
}

/**
 * Answers the parent's stats requests over IPC. `gc` needs `--expose-gc`;
 * without it the figures are taken without collecting first.
 */
export function serveStats (accepted: () => number | undefined = () => undefined): void {
  const reply = (id: number): void => {
    const message: StatsReply = { id, stats: ownStats(accepted()) }
    process.send?.(message)
  }
  process.on('message', (msg: StatsRequest) => {
    if (msg.cmd === 'profile-start' || msg.cmd === 'profile-stop') {
      const step = msg.cmd === 'profile-start' ? startProfile() : stopProfile(msg.file)
      step.then(() => reply(msg.id), (err: unknown) => {
        console.error('[bench] cpu profile:', err)
        reply(msg.id)
      })
      return
    }
    const gc = (globalThis as { gc?: () => void }).gc
    if (msg.cmd !== 'gc' || !gc) {
      reply(msg.id)
      return
    }
    // Two full collections with a pause between them, so that finalizers run and
    // the sweeper hands freed pages back before RSS is read.
    gc()
    setTimeout(() => {
      gc()
      reply(msg.id)
    }, GC_PAUSE_MS)
  })
  // The parent going away (crash, Ctrl-C) must not leave this child running.
  process.on('disconnect', () => process.exit(0))
}

/** Sampling interval of `--cpu-prof` profiles, in microseconds (V8's default is 1000; finer shows short calls). */
const PROFILE_INTERVAL_US = 250

/** The in-process inspector session of the profile being taken, if any. */
let profiler: Session | undefined

/**
 * Starts V8's sampling profiler in this process, through the inspector API
 * rather than `node --cpu-prof`, so that a profile covers one measured window
 * and not the start-up, the warm-up and the other rounds.
 */
async function startProfile (): Promise<void> {
  profiler = new Session()
  profiler.connect()
  await profiler.post('Profiler.enable')
  await profiler.post('Profiler.setSamplingInterval', { interval: PROFILE_INTERVAL_US })
  await profiler.post('Profiler.start')
}

/** Stops the profiler and writes its profile (Chrome's .cpuprofile JSON) to `file`. */
async function stopProfile (file: string | undefined): Promise<void> {
  if (!profiler) return
  const { profile } = await profiler.post('Profiler.stop')
  profiler.disconnect()
  profiler = undefined
  if (file !== undefined) writeFileSync(file, JSON.stringify(profile))
}

/** Sends one event to the parent. */
export function tellParent (event: ChildEvent): void {
  process.send?.(event)
}

const GC_PAUSE_MS = 100

let clockTicks: number | undefined

function ticksPerSecond (): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      clockTicks = 100
    }
  }
  return clockTicks
}

/** Child process ids of `pid`, found by scanning /proc (works without CONFIG_PROC_CHILDREN). */
export function childPids (pid: number): number[] {
  const found: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // Field 4 is the parent pid; the command name (field 2) may hold spaces, so split after ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) found.push(Number(entry))
    } catch {
      // The process ended while we looked.
    }
  }
  return found
}

/** CPU and memory of the given processes, added up, read from /proc. */
export function readProcStats (pids: number[]): ProcStats {
  const total: ProcStats = { cpuUs: 0, rss: 0, maxRss: 0 }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      // After the command name: state is index 0, utime index 11, stime index 12 (fields 14 and 15 in proc(5)).
      const ticks = Number(fields[11]) + Number(fields[12])
      total.cpuUs += ticks * 1e6 / ticksPerSecond()
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      total.rss += kib(status, 'VmRSS') * 1024
      total.maxRss += kib(status, 'VmHWM') * 1024
    } catch {
      // The process ended; it no longer counts.
    }
  }
  return total
}

/**
 * CPU seconds the whole machine has spent busy since boot (every core, from
 * /proc/stat): with this process's, the proxy's and the upstream's own CPU it
 * tells how much other programs took during a window. Interrupt time is left
 * out (loopback traffic is partly handled there, charged to no process, and
 * would look like someone else's work); steal is counted (a neighbour VM).
 * NaN where /proc is absent.
 */
export function machineBusySeconds (): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!
    // cpu  user nice system idle iowait irq softirq steal ...
    const [user, nice, system, , , , , steal] = line.trim().split(/\s+/).slice(1).map(Number)
    return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (steal ?? 0)) / ticksPerSecond()
  } catch {
    return NaN
  }
}

function kib (status: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)
  return match ? Number(match[1]) : 0
}

/** Median of a list (NaN when empty). */
export function median (values: number[]): number {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
