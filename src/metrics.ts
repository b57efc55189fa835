import type { Pool } from './upstream/pool.js'

/** Escape a label value (text exposition format 0.0.4: backslash, double quote, line feed). */
export function escapeLabel (value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

/** `{k="v",...}`, values escaped. */
export function labels (pairs: Record<string, string>): string {
  return '{' + Object.entries(pairs).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',') + '}'
}

/** One metric family: its name, type, help text and sample lines. */
export interface Family {
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
      for (const [status, n] of [...server.responsesByStatus].sort((a, b) => a[0] - b[0])) {
        requests.samples.push(`${requests.name}${labels({ ...id, status: String(status) })} ${n}`)
      }
      for (const [result, n] of server.upgradesByResult) upgrades.samples.push(`${upgrades.name}${labels({ ...id, result })} ${n}`)
      for (const [reason, n] of server.failuresByReason) failures.samples.push(`${failures.name}${labels({ ...id, reason })} ${n}`)
      bytes.samples.push(`${bytes.name}${labels({ ...id, direction: 'in' })} ${server.bytesIn}`)
      bytes.samples.push(`${bytes.name}${labels({ ...id, direction: 'out' })} ${server.bytesOut}`)
      if (server.lastCheck !== null) check.samples.push(`${check.name}${l} ${server.lastCheck.ms / 1000}`)
    }
  }
  let text = ''
  for (const family of [up, draining, tunnels, serverTunnels, active, requests, upgrades, failures, bytes, check]) text += familyText(family)
  return text
}

/** A family in the text format: `# HELP`, `# TYPE`, then its samples, a line each. */
export function familyText (family: Family): string {
  let text = `# HELP ${family.name} ${family.help}\n# TYPE ${family.name} ${family.type}\n`
  for (const sample of family.samples) text += sample + '\n'
  return text
}
