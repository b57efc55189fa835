/**
 * One status and one metrics text for a sockgate/cluster box, made from each
 * worker's own. Pure: the primary gathers the parts over IPC and calls these.
 *
 * Rules: what counts things (requests, failures, bytes, open tunnels, requests
 * in flight) is added up; what states something (a server's state, its last
 * check) is not, since each worker sees its upstreams for itself. A server's
 * `state` is the least available any worker reports (one worker that took it
 * down is worth knowing about), and `workers` lists each worker's own.
 * Figures these rules do not name (`perClient`, and those of later
 * features) are taken as counts and summed, in the status as in the metrics.
 */
import type { GatewayStatus, ServerState, ServerStatus } from '../types.js'

/** One worker's answer, or null when it gave none in time. */
export interface WorkerPart<T> {
  pid: number
  value: T | null
}

/** The server fields that are counts, summed across workers. */
const SUMMED = ['activeTunnels', 'activeRequests', 'requests', 'upgrades', 'failures', 'bytesIn', 'bytesOut'] as const

/** Worse first: the order in which a server's states win the merge. */
const AVAILABILITY: Record<ServerState, number> = { down: 0, draining: 1, up: 2 }

/** A server is the same server in every worker when its name and URL are. */
function serverKey (s: ServerStatus): string {
  return `${s.name ?? ''} ${s.url}`
}

/** The whole box's status: pools and servers merged, tunnels summed, and which workers answered. */
export function mergeStatus (parts: ReadonlyArray<WorkerPart<GatewayStatus>>): GatewayStatus {
  const pools: GatewayStatus['pools'] = {}
  const merged = new Map<string, Map<string, ServerStatus>>()
  let open = 0
  for (const { pid, value } of parts) {
    if (value === null) continue
    open += value.tunnels.open
    for (const [name, pool] of Object.entries(value.pools)) {
      let servers = merged.get(name)
      if (servers === undefined) {
        servers = new Map()
        merged.set(name, servers)
        pools[name] = { servers: [] }
      }
      for (const s of pool.servers) {
        const key = serverKey(s)
        const own = { pid, state: s.state, reason: s.reason }
        const seen = servers.get(key)
        if (seen === undefined) {
          const copy: ServerStatus = { ...s, workers: [own] }
          servers.set(key, copy)
          pools[name]!.servers.push(copy)
          continue
        }
        for (const field of SUMMED) seen[field] += s[field]
        seen.workers!.push(own)
        if (AVAILABILITY[s.state] < AVAILABILITY[seen.state]) {
          seen.state = s.state
          seen.reason = s.reason
        }
        if (s.lastCheck !== null && (seen.lastCheck === null || s.lastCheck.at > seen.lastCheck.at)) seen.lastCheck = s.lastCheck
      }
    }
  }
  // Other top-level fields (perClient, and those of later features) are counts: summed, as unknown metrics are.
  const rest: Record<string, unknown> = {}
  for (const { value } of parts) {
    if (value === null) continue
    for (const [key, v] of Object.entries(value)) {
      if (key !== 'pools' && key !== 'tunnels' && key !== 'cluster') rest[key] = key in rest ? sumCounts(rest[key], v) : v
    }
  }
  return {
    ...rest,
    pools,
    tunnels: { open },
    cluster: { workers: parts.map((p) => ({ pid: p.pid, answered: p.value !== null })) },
  }
}

/** Numbers added up, plain objects key by key; anything else is the first worker's. */
function sumCounts (a: unknown, b: unknown): unknown {
  if (typeof a === 'number' && typeof b === 'number') return a + b
  if (typeof a !== 'object' || a === null || Array.isArray(a) || typeof b !== 'object' || b === null || Array.isArray(b)) return a
  const sum: Record<string, unknown> = { ...a }
  for (const [key, v] of Object.entries(b)) sum[key] = key in sum ? sumCounts(sum[key], v) : v
  return sum
}

/** Gauges that state something rather than count it, and how the workers' values combine; other gauges add up. */
const GAUGE_RULES: Record<string, 'min' | 'max'> = {
  // 1 only when every worker may send the server new work.
  sockgate_upstream_up: 'min',
  sockgate_upstream_draining: 'max',
  sockgate_health_check_duration_seconds: 'max',
}

interface MetricFamily {
  /** The `# HELP` and `# TYPE` lines, as the first worker wrote them. */
  head: string[]
  type: string
  /** Sample values by the sample's name and labels, in first-seen order. */
  samples: Map<string, number>
}

/**
 * The whole box's metrics, one valid text exposition (0.0.4): samples with
 * the same name and labels combine into one (counters and counting gauges
 * summed, the gauges of {@link GAUGE_RULES} by their rule), then
 * `sockgate_cluster_workers` and `sockgate_cluster_workers_answered` say how
 * many workers were asked and how many are counted.
 */
export function mergeMetrics (parts: ReadonlyArray<WorkerPart<string>>): string {
  const families = new Map<string, MetricFamily>()
  for (const { value } of parts) {
    if (value === null) continue
    let family: MetricFamily | undefined
    for (const line of value.split('\n')) {
      if (line === '') continue
      const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line)
      if (meta !== null) {
        const [, kind, name, rest] = meta as unknown as [string, string, string, string]
        family = families.get(name)
        if (family === undefined) {
          family = { head: [], type: 'untyped', samples: new Map() }
          families.set(name, family)
        }
        if (family.head.length < 2 && !family.head.some((h) => h.startsWith(`# ${kind} `))) family.head.push(line)
        if (kind === 'TYPE') family.type = rest
        continue
      }
      if (line.startsWith('#') || family === undefined) continue
      const space = line.lastIndexOf(' ')
      const key = line.slice(0, space)
      const n = Number(line.slice(space + 1))
      const seen = family.samples.get(key)
      family.samples.set(key, seen === undefined ? n : combine(family, familyName(key), seen, n))
    }
  }
  let text = ''
  for (const family of families.values()) {
    text += family.head.join('\n') + '\n'
    for (const [key, n] of family.samples) text += `${key} ${n}\n`
  }
  const answered = parts.filter((p) => p.value !== null).length
  text += '# HELP sockgate_cluster_workers Workers of the sockgate/cluster box asked for these figures.\n' +
    `# TYPE sockgate_cluster_workers gauge\nsockgate_cluster_workers ${parts.length}\n` +
    '# HELP sockgate_cluster_workers_answered Workers whose figures are counted here (the others did not answer in time).\n' +
    `# TYPE sockgate_cluster_workers_answered gauge\nsockgate_cluster_workers_answered ${answered}\n`
  return text
}

function familyName (key: string): string {
  const brace = key.indexOf('{')
  return brace === -1 ? key : key.slice(0, brace)
}

function combine (family: MetricFamily, name: string, a: number, b: number): number {
  const rule = family.type === 'gauge' ? GAUGE_RULES[name] : undefined
  if (rule === 'min') return Math.min(a, b)
  if (rule === 'max') return Math.max(a, b)
  return a + b
}
