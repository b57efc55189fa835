import type { IncomingMessage, ServerResponse } from 'node:http'
import { BadRequestError, ForbiddenError, GatewayClosedError } from './errors.js'
import { sendError } from './respond.js'
import { hostName } from './host.js'
import type { NormalizedOptions } from './options.js'
import type { GatewayStatus, ServerStatus } from './types.js'

/** Seconds between reloads of the HTML page (`<meta http-equiv="refresh">`). */
export const STATUS_REFRESH_SECONDS = 5
/** Content type of the Prometheus text exposition format. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/** What the status page reads from the gateway. */
export interface StatusSource {
  readonly closed: boolean
  status (): GatewayStatus
  metrics (): string
  /** Where the page reads instead when it answers for several processes (sockgate/cluster); null: the gateway itself. */
  readonly statusProvider: StatusProvider | null
}

/** The figures of more than one gateway, read asynchronously (from other processes). */
export interface StatusProvider {
  status (): Promise<GatewayStatus>
  metrics (): Promise<string>
}

type StatusSpec = NonNullable<NormalizedOptions['status']>
type Format = 'html' | 'json' | 'prometheus'

/** Whether a request for `host` and `url` asks for the status page. */
export type StatusMatcher = (host: string | undefined, url: string) => boolean

/**
 * The status page's request test: its path (query aside) and, when
 * `status.host` is set, the Host header's name (its port does not count, as
 * for routes). The one test the core and the Fastify adapter both use.
 */
export function compileStatusMatcher (spec: StatusSpec): StatusMatcher {
  const host = spec.host
  return (requestHost, url) => isStatusPath(spec, url) && (host === null || hostName(requestHost) === host)
}

/** True when `url`'s path (query aside) is the status page's, whatever the host. */
export function isStatusPath (spec: StatusSpec, url: string): boolean {
  const q = url.indexOf('?')
  return (q === -1 ? url : url.slice(0, q)) === spec.path
}

/** The format asked for: `?format=` first, then `Accept`; undefined for an unknown `?format=`. */
export function statusFormat (req: IncomingMessage): Format | undefined {
  const url = new URL(req.url ?? '/', 'http://status.invalid')
  const format = url.searchParams.get('format')
  if (format !== null) return format === 'html' || format === 'json' || format === 'prometheus' ? format : undefined
  const accept = (req.headers.accept ?? '').toLowerCase()
  // What Prometheus itself sends when it scrapes.
  if (accept.includes('application/openmetrics-text') || accept.includes('version=0.0.4')) return 'prometheus'
  if (accept.includes('application/json') && !accept.includes('text/html')) return 'json'
  return 'html'
}

/**
 * Answer a status request: HTML for people, JSON (equal to
 * `gateway.status()`), or Prometheus text. The `auth` hook runs first; when
 * it says no (or throws) the answer is 403. Only GET and HEAD are served.
 */
export async function serveStatus (source: StatusSource, spec: StatusSpec, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (source.closed) return sendError(res, new GatewayClosedError())
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    const text = '405 Method Not Allowed: the status page answers GET and HEAD.\n'
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(text)) })
    res.end(text)
    return
  }
  const auth = spec.auth ?? null
  if (auth !== null) {
    let allowed = false
    try {
      allowed = await auth(req) === true
    } catch {
      // Fail closed: an auth hook that breaks must not open the page.
    }
    if (!allowed) return sendError(res, new ForbiddenError('the status page'))
  }
  const format = statusFormat(req)
  if (format === undefined) return sendError(res, new BadRequestError("format must be 'html', 'json' or 'prometheus'"))
  let body: string
  const headers: Record<string, string> = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' }
  const box = source.statusProvider
  if (format === 'json') {
    body = JSON.stringify(box === null ? source.status() : await box.status())
    headers['content-type'] = 'application/json; charset=utf-8'
  } else if (format === 'prometheus') {
    body = box === null ? source.metrics() : await box.metrics()
    headers['content-type'] = PROMETHEUS_CONTENT_TYPE
  } else {
    body = renderStatusHtml(box === null ? source.status() : await box.status())
    headers['content-type'] = 'text/html; charset=utf-8'
    headers['content-security-policy'] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
  }
  headers['content-length'] = String(Buffer.byteLength(body))
  if (!req.complete) headers.connection = 'close'
  res.writeHead(200, headers)
  res.end(req.method === 'HEAD' ? undefined : body)
}

/** Escape text for HTML element content and double-quoted attributes. */
export function escapeHtml (value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function formatBytes (n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = -1
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${v.toFixed(1)} ${units[i]}`
}

function formatAgo (ms: number): string {
  if (ms < 1_000) return 'just now'
  if (ms < 60_000) return `${Math.round(ms / 1000)} s ago`
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min ago`
  return `${Math.round(ms / 3_600_000)} h ago`
}

function serverRow (s: ServerStatus, now: number): string {
  const check = s.lastCheck === null
    ? '<td>–</td><td class="num">–</td>'
    : `<td><time datetime="${escapeHtml(new Date(s.lastCheck.at).toISOString())}">${escapeHtml(formatAgo(now - s.lastCheck.at))}</time>` +
      ` <span class="${s.lastCheck.ok ? 'ok' : 'bad'}">${s.lastCheck.ok ? 'passed' : 'failed'}</span></td>` +
      `<td class="num">${escapeHtml(s.lastCheck.ms)} ms</td>`
  const flags = (s.backup ? ' <span class="tag">backup</span>' : '') + (s.weight !== 1 ? ` <span class="tag">weight ${escapeHtml(s.weight)}</span>` : '')
  return '<tr>' +
    (s.name === null ? `<td><code>${escapeHtml(s.url)}</code>${flags}</td>` : `<td><strong>${escapeHtml(s.name)}</strong> <code>${escapeHtml(s.url)}</code>${flags}</td>`) +
    `<td><span class="state state-${escapeHtml(s.state)}">${escapeHtml(s.state)}</span>${workerStates(s)}</td>` +
    `<td>${escapeHtml(s.reason ?? '')}</td>` +
    check +
    `<td class="num">${escapeHtml(s.activeTunnels)}</td>` +
    `<td class="num">${escapeHtml(s.requests)} <small>(${escapeHtml(s.activeRequests)} active)</small></td>` +
    `<td class="num">${escapeHtml(s.upgrades)}</td>` +
    `<td class="num">${escapeHtml(s.failures)}</td>` +
    `<td class="num">${escapeHtml(formatBytes(s.bytesIn))} / ${escapeHtml(formatBytes(s.bytesOut))}</td>` +
    '</tr>'
}

/** Under sockgate/cluster, each worker's state of a server when the workers disagree; nothing otherwise. */
function workerStates (s: ServerStatus): string {
  const workers = s.workers
  if (workers === undefined || workers.every((w) => w.state === s.state)) return ''
  return '<br><small>' + workers.map((w) => `pid ${escapeHtml(w.pid)}: ${escapeHtml(w.state)}${w.reason === null ? '' : ` (${escapeHtml(w.reason)})`}`).join(', ') + '</small>'
}

/** Under sockgate/cluster, which workers' figures the page adds up. */
function clusterLine (status: GatewayStatus): string {
  const workers = status.cluster?.workers
  if (workers === undefined) return ''
  const answered = workers.filter((w) => w.answered)
  const missing = workers.filter((w) => !w.answered)
  return `<p class="meta">${answered.length} of ${workers.length} worker${workers.length === 1 ? '' : 's'} counted: ` +
    answered.map((w) => `pid ${escapeHtml(w.pid)}`).join(', ') +
    (missing.length === 0 ? '' : ` · <span class="bad">no answer in time from ${missing.map((w) => `pid ${escapeHtml(w.pid)}`).join(', ')}</span>`) +
    '</p>\n'
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #1b1f24; background: #fff; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
p.meta { color: #57606a; margin: 0 0 1rem; }
table { border-collapse: collapse; min-width: 60rem; }
th, td { border-bottom: 1px solid #d0d7de; padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.state { display: inline-block; padding: 0 .5rem; border-radius: 1rem; font-weight: 600; }
.state-up { background: #dafbe1; color: #116329; }
.state-down { background: #ffebe9; color: #a40e26; }
.state-draining { background: #fff8c5; color: #7d4e00; }
.ok { color: #116329; } .bad { color: #a40e26; }
.tag { font-size: .8em; color: #57606a; border: 1px solid #d0d7de; border-radius: .3rem; padding: 0 .3rem; }
`

/** The status page: one table per pool; everything that comes from configuration or upstreams is escaped. */
export function renderStatusHtml (status: GatewayStatus, now = Date.now()): string {
  let tables = ''
  for (const [name, pool] of Object.entries(status.pools)) {
    const up = pool.servers.filter((s) => s.state === 'up').length
    tables += `<section><h2>Pool <code>${escapeHtml(name)}</code> <small>${up} of ${pool.servers.length} up</small></h2>\n` +
      '<table><thead><tr><th>Server</th><th>State</th><th>Why</th><th>Last check</th><th>Latency</th>' +
      '<th>Open tunnels</th><th>Requests</th><th>Upgrades</th><th>Failures</th><th>Bytes in / out</th></tr></thead>\n<tbody>\n' +
      pool.servers.map((s) => serverRow(s, now)).join('\n') +
      '\n</tbody></table></section>\n'
  }
  return '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    `<meta http-equiv="refresh" content="${STATUS_REFRESH_SECONDS}">` +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    '<link rel="icon" href="data:,">' +
    `<title>sockgate status</title><style>${STYLE}</style></head>\n<body>\n` +
    '<h1>sockgate status</h1>\n' +
    `<p class="meta">${escapeHtml(status.tunnels.open)} open tunnel${status.tunnels.open === 1 ? '' : 's'} · ` +
    `generated <time datetime="${escapeHtml(new Date(now).toISOString())}">${escapeHtml(new Date(now).toISOString())}</time> · ` +
    `reloads every ${STATUS_REFRESH_SECONDS} s · also as <a href="?format=json">JSON</a> and <a href="?format=prometheus">Prometheus</a></p>\n` +
    clusterLine(status) +
    tables +
    '</body></html>\n'
}
