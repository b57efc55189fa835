import { failureReason } from './health.js'
import type { Pool } from './upstream/pool.js'
import type { UpstreamServer } from './upstream/server.js'

/** How an upgrade ended, as counted by `sockgate_upgrades_total{result}`. */
export type UpgradeResult = 'switched' | 'refused' | 'failed' | 'aborted'

/** Counters by label value that `UpstreamServer` itself does not keep. */
interface ServerCounters {
  /** Responses by status code, sent to clients of this server. */
  statuses: Map<number, number>
  /** Upgrades by result. */
  upgrades: Map<UpgradeResult, number>
  /** Failed attempts (what passive health counts) by reason. */
  failures: Map<string, number>
}

// Keyed by the server object: a server removed from its pool takes its counters with it.
const counters = new WeakMap<UpstreamServer, ServerCounters>()

function countersOf (server: UpstreamServer): ServerCounters {
  let c = counters.get(server)
  if (c === undefined) {
    c = { statuses: new Map(), upgrades: new Map(), failures: new Map() }
    counters.set(server, c)
  }
  return c
}

function bump<K> (map: Map<K, number>, key: K): void {
  map.set(key, (map.get(key) ?? 0) + 1)
}

/** Count an HTTP response sent on behalf of `server` (its own answer, or the 502/504 the gateway sent after it failed). */
export function countResponse (server: UpstreamServer, status: number): void {
  bump(countersOf(server).statuses, status)
}

/** Count how an upgrade to `server` ended. */
export function countUpgrade (server: UpstreamServer, result: UpgradeResult): void {
  bump(countersOf(server).upgrades, result)
}

/** Count a failed attempt (connect error, reset, timeout) by its reason (`'ECONNREFUSED'`, `'timeout'`). */
export function countFailure (server: UpstreamServer, err: unknown): void {
  bump(countersOf(server).failures, failureReason(err))
}

/** Escape a label value (text exposition format 0.0.4: backslash, double quote, line feed). */
export function escapeLabel (value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

function labels (pairs: Record<string, string>): string {
  return '{' + Object.entries(pairs).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',') + '}'
}

interface Family {
  name: string
  type: 'counter' | 'gauge'
  help: string
  samples: string[]
}

/**
 * The gateway's metrics in the Prometheus text exposition format (0.0.4):
 * `sockgate_upstream_up`, `sockgate_tunnels_open`, `sockgate_requests_total`,
 * `sockgate_upgrades_total`, `sockgate_upstream_failures_total`,
 * `sockgate_bytes_total` and a few gauges, each with `# HELP` and `# TYPE`.
 * Counters start from zero with the gateway (and with a server added at run
 * time); Prometheus' `rate()` handles the reset.
 */
export function renderPrometheus (pools: Iterable<Pool>, tunnelsOpen: number, now = Date.now()): string {
  const f = (name: string, type: Family['type'], help: string): Family => ({ name, type, help, samples: [] })
  const up = f('sockgate_upstream_up', 'gauge', 'Whether the server may take new work (1), or is down (0); a draining server counts as up.')
  const draining = f('sockgate_upstream_draining', 'gauge', 'Whether the server is draining: no new sessions, open tunnels run on.')
  const tunnels = f('sockgate_tunnels_open', 'gauge', 'Open tunnels (upgraded connections) of the gateway.')
  const serverTunnels = f('sockgate_upstream_tunnels_open', 'gauge', 'Open tunnels of the server.')
  const active = f('sockgate_upstream_requests_active', 'gauge', 'HTTP requests in flight to the server.')
  const requests = f('sockgate_requests_total', 'counter', 'HTTP responses sent on behalf of the server, by status.')
  const upgrades = f('sockgate_upgrades_total', 'counter', 'Upgrades sent to the server, by result (switched, refused, failed, aborted).')
  const failures = f('sockgate_upstream_failures_total', 'counter', 'Failed attempts to reach the server (what passive health counts), by reason.')
  const bytes = f('sockgate_bytes_total', 'counter', 'Bytes through closed tunnels of the server: in (client to server) and out (server to client).')
  const check = f('sockgate_health_check_duration_seconds', 'gauge', 'Duration of the last active health check of the server.')

  tunnels.samples.push(`sockgate_tunnels_open ${tunnelsOpen}`)
  for (const pool of pools) {
    for (const server of pool.servers) {
      // A named server is labelled by its name, which stays put when its address changes.
      const id = { pool: pool.name, server: server.label }
      const l = labels(id)
      const { state } = server.state(now)
      up.samples.push(`${up.name}${l} ${state === 'down' ? 0 : 1}`)
      draining.samples.push(`${draining.name}${l} ${state === 'draining' ? 1 : 0}`)
      serverTunnels.samples.push(`${serverTunnels.name}${l} ${server.activeTunnels}`)
      active.samples.push(`${active.name}${l} ${server.activeRequests}`)
      const c = countersOf(server)
      for (const [status, n] of [...c.statuses].sort((a, b) => a[0] - b[0])) {
        requests.samples.push(`${requests.name}${labels({ ...id, status: String(status) })} ${n}`)
      }
      for (const [result, n] of c.upgrades) upgrades.samples.push(`${upgrades.name}${labels({ ...id, result })} ${n}`)
      for (const [reason, n] of c.failures) failures.samples.push(`${failures.name}${labels({ ...id, reason })} ${n}`)
      bytes.samples.push(`${bytes.name}${labels({ ...id, direction: 'in' })} ${server.bytesIn}`)
      bytes.samples.push(`${bytes.name}${labels({ ...id, direction: 'out' })} ${server.bytesOut}`)
      if (server.lastCheck !== null) check.samples.push(`${check.name}${l} ${server.lastCheck.ms / 1000}`)
    }
  }
  let text = ''
  for (const family of [up, draining, tunnels, serverTunnels, active, requests, upgrades, failures, bytes, check]) {
    text += `# HELP ${family.name} ${family.help}\n# TYPE ${family.name} ${family.type}\n`
    for (const sample of family.samples) text += sample + '\n'
  }
  return text
}
