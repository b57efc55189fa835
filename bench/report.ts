/** Per-round results, their medians, and the text table printed after each workload. */
import { median } from './measure.js'
import type { SockgateGoals, Workload } from './workloads/types.js'

/** One measurement window of one target in one round. */
export interface WindowResult {
  round: number
  target: string
  /** Set when the window could not be measured; the other figures are then absent. */
  failed?: string
  seconds?: number
  ops?: number
  errors?: number
  /** Operations per second over the window. */
  rate?: number
  /** Proxy CPU seconds (user + system) during the window. */
  cpuSeconds?: number
  /** Proxy peak RSS so far (bytes); the proxy was started for this workload. */
  maxRss?: number
  /** Idle workload: proxy RSS growth per open tunnel, and the RSS readings it came from (bytes). */
  bytesPerTunnel?: number
  rssBefore?: number
  rssAfter?: number
  /** Upstream child's CPU seconds and accepted TCP connections during the window (diagnostics). */
  upstreamCpuSeconds?: number
  upstreamAccepted?: number
  /** The load generator's (this process's) CPU seconds during the window. */
  clientCpuSeconds?: number
  /** Cores' worth of CPU used by other programs during the window (busy machine = noisy figures). */
  otherCores?: number
  /** Time spent opening connections before, and closing them after, the window (ms). */
  setupMs?: number
  teardownMs?: number
}

export interface SummaryRow {
  target: string
  /** Median headline figure: ops/s, MB/s, or bytes per tunnel for the idle workload. */
  value: number
  vsDirect: number
  vsSockgate: number
  cpuPer100k: number
  peakRssMb: number
  errors: number
  /** (max - min) / median of the headline figure across rounds. */
  spread: number
  rounds: number
  failed?: string
}

export interface WorkloadResult {
  name: string
  /** Wall-clock seconds the workload took, and the part spent starting its proxies (ms; 0 for idle, which starts one per measurement). */
  seconds: number
  startMs: number
  /** Median cores' worth of CPU other programs used during the windows. */
  otherCores: number
  title: string
  unit: string
  goals: SockgateGoals | { bytesPerTunnel: number }
  unavailable: Record<string, string>
  windows: WindowResult[]
  summary: SummaryRow[]
}

const MB = 1e6
/** Other programs' CPU use (in cores) past which a table says its figures are noisy. */
const BUSY_CORES = 0.2

function headline (workload: Workload, w: WindowResult): number {
  if (workload.kind === 'idle') return w.bytesPerTunnel ?? NaN
  const rate = w.rate ?? NaN
  return workload.bytesPerOp ? rate * workload.bytesPerOp / MB : rate
}

/** Medians per target, in the order the targets ran. */
export function summarize (workload: Workload, targets: string[], windows: WindowResult[]): SummaryRow[] {
  const rows = targets.map((target): SummaryRow => {
    const mine = windows.filter((w) => w.target === target)
    const good = mine.filter((w) => !w.failed)
    const values = good.map((w) => headline(workload, w))
    const value = median(values)
    const cpu = good.map((w) => (w.cpuSeconds !== undefined && w.ops ? w.cpuSeconds / w.ops * 1e5 : NaN))
    const peaks = good.map((w) => w.maxRss ?? NaN).filter(Number.isFinite)
    return {
      target,
      value,
      vsDirect: NaN,
      vsSockgate: NaN,
      cpuPer100k: median(cpu),
      peakRssMb: peaks.length ? Math.max(...peaks) / MB : NaN,
      errors: good.reduce((sum, w) => sum + (w.errors ?? 0), 0),
      spread: values.length > 1 ? (Math.max(...values) - Math.min(...values)) / value : NaN,
      rounds: good.length,
      failed: good.length === 0 ? mine.find((w) => w.failed)?.failed ?? 'no rounds' : undefined,
    }
  })
  const direct = rows.find((r) => r.target === 'direct')?.value ?? NaN
  const sockgate = rows.find((r) => r.target === 'sockgate')?.value ?? NaN
  for (const row of rows) {
    row.vsDirect = row.value / direct
    row.vsSockgate = row.value / sockgate
  }
  return rows
}

function fmt (n: number, digits = 0): string {
  if (!Number.isFinite(n)) return '-'
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** Node proxies sockgate is measured against (not its own adapters). */
const NODE_PEERS = ['http-proxy', 'hpm']

/** One of sockgate's goals checked against this run's figures. */
export interface GoalCheck {
  what: string
  actual: string
  ok: boolean
}

/** The core's goals for `workload`, each checked against figures of this run; those it lacks a figure for are left out. */
export function checkGoals (workload: Workload, rows: SummaryRow[]): GoalCheck[] {
  const row = rows.find((r) => r.target === 'sockgate' && !r.failed)
  if (row === undefined) return []
  if (workload.kind === 'idle') {
    return [{ what: `<= ${fmt(workload.budgetBytes / 1024)} KiB per idle tunnel`, actual: `${fmt(row.value / 1024, 1)} KiB`, ok: row.value <= workload.budgetBytes }]
  }
  const checks: GoalCheck[] = []
  const cpuOf = (names: string[]): number => Math.min(...rows.filter((r) => names.includes(r.target) && !r.failed).map((r) => r.cpuPer100k).filter(Number.isFinite))
  const ratio = (limit: number | undefined, names: string[], label: string): void => {
    const base = cpuOf(names)
    if (limit === undefined || !Number.isFinite(base) || !Number.isFinite(row.cpuPer100k)) return
    const r = row.cpuPer100k / base
    checks.push({ what: `CPU <= ${fmt(limit, 2)}x ${label}`, actual: `${fmt(r, 2)}x`, ok: r <= limit })
  }
  const { vsNodePeers, vsNginx, peakRssMb } = workload.goals
  ratio(vsNodePeers, NODE_PEERS, 'the cheapest Node peer')
  ratio(vsNginx, ['nginx'], 'nginx')
  if (peakRssMb !== undefined && Number.isFinite(row.peakRssMb)) {
    checks.push({ what: `peak RSS <= ${fmt(peakRssMb)} MB`, actual: `${fmt(row.peakRssMb, 1)} MB`, ok: row.peakRssMb <= peakRssMb })
  }
  return checks
}

function goalMark (row: SummaryRow, checks: GoalCheck[]): string {
  if (row.target !== 'sockgate' || row.failed || checks.length === 0) return ''
  return checks.every((c) => c.ok) ? 'ok' : 'OVER'
}

/** The table printed for one workload. */
export function formatTable (workload: Workload, rows: SummaryRow[], unavailable: Record<string, string>, otherCores = 0): string {
  const idle = workload.kind === 'idle'
  const unit = idle ? 'KiB/tunnel' : workload.unit
  const checks = checkGoals(workload, rows)
  const header = idle
    ? ['target', unit, 'vs sockgate', 'peak RSS MB', 'goals']
    : ['target', unit, 'vs direct', 'vs sockgate', 'CPU s/100k', 'peak RSS MB', 'spread', 'errors', 'goals']
  const lines = rows.map((row) => {
    if (row.failed) return [row.target, `failed: ${row.failed}`]
    if (idle) {
      return [row.target, fmt(row.value / 1024, 1), fmt(row.vsSockgate, 2), fmt(row.peakRssMb, 1), goalMark(row, checks)]
    }
    const digits = row.value < 100 ? 1 : 0
    return [
      row.target, fmt(row.value, digits), fmt(row.vsDirect, 2), fmt(row.vsSockgate, 2), fmt(row.cpuPer100k, 2),
      fmt(row.peakRssMb, 1), Number.isFinite(row.spread) ? `±${fmt(row.spread * 50, 0)}%` : '-', fmt(row.errors), goalMark(row, checks),
    ]
  })
  const widths = header.map((h, i) => Math.max(h.length, ...lines.filter((l) => l.length > 2).map((l) => (l[i] ?? '').length)))
  const render = (cells: string[]): string => cells.length === 2 && cells[1]!.startsWith('failed')
    ? `  ${cells[0]!.padEnd(widths[0]!)}  ${cells[1]}`
    : '  ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd()
  const goals = checks.length === 0
    ? 'goals (sockgate): none checked in this run'
    : `goals (sockgate, this run): ${checks.map((c) => `${c.what}: ${c.actual} ${c.ok ? 'ok' : 'OVER'}`).join('; ')}`
  const out = [
    `${workload.name}: ${workload.title}`,
    render(header),
    render(header.map((_h, i) => '-'.repeat(widths[i]!))),
    ...lines.map(render),
    `  ${goals}`,
  ]
  for (const [name, reason] of Object.entries(unavailable)) out.push(`  ${name}: unavailable: ${reason}`)
  if (otherCores >= BUSY_CORES) {
    out.push(`  note: other programs kept ${fmt(otherCores, 1)} cores busy during these windows (median): expect noisier figures`)
  }
  return out.join('\n')
}
