/** Command-line options of bench/run.ts. */
import { ALL_TARGETS } from './targets.js'
import { WORKLOADS } from './workloads/index.js'

export interface BenchOptions {
  rounds: number
  /** Measured seconds per window. */
  seconds: number
  /** Seconds of load before each window starts counting. */
  warmup: number
  /** Extra warm-up for each proxy's first window: it was just started, its code is not optimised yet. */
  firstWarmup: number
  workloads: string[]
  targets: string[]
  tunnels: number
  quick: boolean
  /** Also run bench/balance.ts (balancing methods with 3 upstreams) at the end. */
  balance: boolean
  /** Where to write a CPU profile of each Node proxy's measured windows (`--cpu-prof=DIR`), if anywhere. */
  cpuProf: string | undefined
}

export const USAGE = `usage: npm run bench -- [options]
  --quick              about a minute: 1 round of short windows (a smoke test, not figures)
  --only=a,b           workloads: ${WORKLOADS.map((w) => w.name).join(', ')}
  --targets=a,b        targets: ${ALL_TARGETS.join(', ')}
  --rounds=N           rounds per workload (default 3, quick 1)
  --seconds=S          measured seconds per window (default 1.2, quick 0.4)
  --warmup=S           unmeasured seconds before each window (default 0.25, quick 0.15)
  --tunnels=N          idle tunnels for idle-rss (default 1000)
  --cpu-prof=DIR       write a CPU profile of every Node proxy's measured window to DIR
                       (<workload>-<target>-r<round>.cpuprofile; read with bench/profile-summary.ts);
                       profiling adds CPU, so compare those figures only with each other
  --no-balance         skip the balancing-method run at the end (skipped anyway with --only or --targets)
  --help`

function list (value: string, known: readonly string[], what: string): string[] {
  const names = value.split(',').map((s) => s.trim()).filter(Boolean)
  const unknown = names.filter((n) => !known.includes(n))
  if (unknown.length) throw new Error(`unknown ${what}: ${unknown.join(', ')} (known: ${known.join(', ')})`)
  return names
}

function positive (name: string, value: string, integer: boolean): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new Error(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got '${value}'`)
  }
  return n
}

function nonEmpty (name: string, value: string): string {
  if (value === '') throw new Error(`--${name} needs a directory`)
  return value
}

/** Parses argv; throws with a message on anything it does not understand. Returns undefined for --help. */
export function parseOptions (argv: string[]): BenchOptions | undefined {
  const quick = argv.includes('--quick')
  const options: BenchOptions = {
    rounds: quick ? 1 : 3,
    seconds: quick ? 0.4 : 1.2,
    warmup: quick ? 0.15 : 0.25,
    firstWarmup: quick ? 0.15 : 0.4,
    workloads: WORKLOADS.map((w) => w.name),
    targets: [...ALL_TARGETS],
    tunnels: 1000,
    quick,
    balance: !argv.includes('--no-balance') && !argv.some((a) => a.startsWith('--only=') || a.startsWith('--targets=')),
    cpuProf: undefined,
  }
  for (const arg of argv) {
    if (arg === '--quick' || arg === '--no-balance') continue
    if (arg === '--help' || arg === '-h') return undefined
    const match = /^--([a-z-]+)=(.*)$/.exec(arg)
    const [, name, value = ''] = match ?? []
    switch (name) {
      case 'only': options.workloads = list(value, WORKLOADS.map((w) => w.name), 'workload'); break
      case 'targets': options.targets = list(value, ALL_TARGETS, 'target'); break
      case 'rounds': options.rounds = positive(name, value, true); break
      case 'seconds': options.seconds = positive(name, value, false); break
      case 'warmup': options.warmup = positive(name, value, false); break
      case 'tunnels': options.tunnels = positive(name, value, true); break
      case 'cpu-prof': options.cpuProf = nonEmpty(name, value); break
      default: throw new Error(`unknown option ${arg}\n${USAGE}`)
    }
  }
  // Keep the run's order fixed whatever order the flags named them in.
  options.targets = ALL_TARGETS.filter((t) => options.targets.includes(t))
  options.workloads = WORKLOADS.map((w) => w.name).filter((w) => options.workloads.includes(w))
  return options
}
