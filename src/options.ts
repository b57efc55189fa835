import cluster from 'node:cluster'
import type { IncomingMessage } from 'node:http'
import { isIP } from 'node:net'
import { InvalidOptionError } from './errors.js'
import { isPlainObject, normalizeHeaderOptions, type NormalizedHeaderOptions } from './headers.js'
import { isToken } from './http-syntax.js'
import { compileOrigins, type OriginCheck } from './origin.js'
import { compileTrust, type TrustPredicate } from './trust.js'
import { defaultStickySecret } from './balance/sticky.js'
import { redisSessionStore, type SessionStore } from './balance/session-store.js'
import { boxSessionStore } from './cluster/sessions.js'
import { isServerName } from './engine-io-id.js'
import { MAX_TIMER_MS, type ServerSpec } from './upstream/server.js'
import type {
  BalanceOption, DiscoverOptions, GatewayOptions, HealthOptions, Logger, RouteOptions, ServerOption, StatusOptions, UpstreamOptions, UpstreamTlsOptions,
} from './types.js'

export const DEFAULT_TIMEOUTS = Object.freeze({ connect: 5_000, handshake: 10_000, request: 60_000, send: 60_000, idle: 0, maxLifetime: 0 })
/**
 * The shortest `timeouts.maxLifetime`: ending every tunnel sooner would keep
 * clients reconnecting rather than working, and is most likely seconds
 * written where milliseconds belong.
 */
export const MIN_MAX_LIFETIME = 1_000
export const DEFAULT_BODY_LIMIT = 1_048_576
/** Balancers write the PROXY header right after the TCP handshake: a peer silent this long is not one. */
export const DEFAULT_PROXY_PROTOCOL_TIMEOUT = 5_000
/** Clients `limits.perClient` tracks at most: a few MB of small entries, as an nginx zone of about 10m holds. */
export const DEFAULT_MAX_CLIENTS = 65_536
export const DEFAULT_UPGRADES = Object.freeze(['websocket'])
export const DEFAULT_STATUS_PATH = '/sockgate/status'
export const DEFAULT_MAX_FAILS = 1
export const DEFAULT_FAIL_TIMEOUT = 10_000
/** Connections the gateway opens to one server at most (undici's `connections`); more requests wait their turn. */
export const DEFAULT_CONNECTIONS = 1024
export const DEFAULT_HEALTH = Object.freeze({ interval: 3_000, rise: 2, fall: 3, timeout: 1_000, type: 'tcp' as const })
/** `discover` defaults: re-resolve every 5 s; a server that left the answer has 60 s to end its tunnels. */
export const DEFAULT_DISCOVER = Object.freeze({ interval: 5_000, drainTimeout: 60_000 })
/** The name of the pool made by the `target` shorthand. */
export const DEFAULT_POOL = 'default'

/** A pool's health settings after validation. */
export interface NormalizedHealth {
  readonly interval: number
  readonly rise: number
  readonly fall: number
  readonly timeout: number
  readonly type: 'tcp' | 'http' | 'engine.io'
  readonly path: string
  readonly expectStatus: readonly [number, number]
  readonly expectBody: string | RegExp | null
}

/** A pool's `sticky` option after validation. */
export interface NormalizedSticky {
  readonly engineIo: boolean
  /** The Redis client of `engineIo: { store }`, behind its adapter; null without one. */
  readonly store: SessionStore | null
  readonly cookie: Readonly<{ name: string, secret: string, maxAge: number | null }> | null
}

/** A pool's `discover` option after validation. */
export interface NormalizedDiscover {
  /** The name looked up, without a trailing dot. */
  readonly dns: string
  /** The port of every server found by A/AAAA; null with `srv` (the records carry it). */
  readonly port: number | null
  readonly srv: boolean
  readonly interval: number
  /** DNS servers as `Resolver.setServers()` takes them; null: the system's. */
  readonly resolver: readonly string[] | null
  readonly drainTimeout: number
}

/** `limits.perClient` after validation; null stands for a limit not set. */
export interface NormalizedPerClient {
  readonly connections: number | null
  readonly requestsPerSecond: number | null
  /** Requests past the rate that may come at once (0 when requestsPerSecond is not set). */
  readonly burst: number
  readonly upgradesPerMinute: number | null
  readonly maxClients: number
}

/** A pool after validation. */
export interface NormalizedUpstream {
  readonly name: string
  /** The configured servers; discovery adds and removes others at run time, never these. */
  readonly servers: ReadonlyArray<Readonly<ServerSpec>>
  readonly discover: NormalizedDiscover | null
  readonly balance: Readonly<BalanceOption>
  readonly sticky: NormalizedSticky
  readonly health: NormalizedHealth | null
  /** Cap on the HTTP connections to each server of the pool. */
  readonly connections: number
  /** Send a non-idempotent request that reached a failing server to the next one all the same. */
  readonly retryNonIdempotent: boolean
  readonly maxFails: number
  readonly failTimeout: number
  readonly tries: number
  readonly failoverTimeout: number
  readonly tls: Readonly<UpstreamTlsOptions> | null
  /** Milliseconds over which a server that comes back or joins ramps up to its weight; 0: none. */
  readonly slowStart: number
}

/** How a route matches the Host header. */
export type HostMatcher =
  | { readonly kind: 'any' }
  | { readonly kind: 'exact', readonly host: string }
  | { readonly kind: 'suffix', readonly suffix: string }
  | { readonly kind: 'regexp', readonly re: RegExp }

/** A route after validation. */
export interface NormalizedRoute {
  readonly host: HostMatcher
  readonly path: string
  readonly upstream: string
  readonly stripPrefix: boolean
  /** Write logger records for this route. */
  readonly log: boolean
}

/**
 * Everything `createGateway()` needs, validated, defaulted, compiled and
 * frozen all the way down (see {@link normalizeOptions}).
 */
export interface NormalizedOptions {
  readonly upstreams: readonly NormalizedUpstream[]
  readonly routes: readonly NormalizedRoute[]
  readonly headers: NormalizedHeaderOptions
  readonly trust: TrustPredicate
  readonly timeouts: Readonly<{ connect: number, handshake: number, request: number, send: number, idle: number, maxLifetime: number }>
  readonly proxyProtocol: NormalizedProxyProtocol | null
  readonly limits: Readonly<{ body: number, perClient: NormalizedPerClient | null }>
  /** Whether an upgrade's Origin may go on, or null when `origins` is not set. */
  readonly originAllowed: OriginCheck | null
  /** Allowed Upgrade tokens, lower case. */
  readonly upgrades: ReadonlySet<string>
  readonly status: Readonly<{ path: string, host: string | null, auth: StatusOptions['auth'] | null }> | null
  readonly authorize: NonNullable<GatewayOptions['authorize']> | null
  readonly onError: NonNullable<GatewayOptions['onError']> | null
  readonly onResponse: NonNullable<GatewayOptions['onResponse']> | null
  readonly logger: Logger | null
}

/** `proxyProtocol` after validation. */
export interface NormalizedProxyProtocol {
  /** The peers that must send a header, compiled. */
  readonly trusted: TrustPredicate
  /** The list as given, trimmed: two gateways on one server must agree on it. */
  readonly trustedList: readonly string[]
  readonly timeout: number
}

/** Options renamed since they were first published, with where they live now. */
const RENAMED: Record<string, string> = {
  connectTimeout: 'timeouts.connect',
  proxyTimeout: 'timeouts.request',
  timeout: 'timeouts.request',
  ws: 'upgrades',
  xfwd: 'headers.xForwarded',
  changeOrigin: "headers.host: 'upstream'",
}
/** Pool options, which the `target` shorthand takes at the top level. */
const POOL_KEYS = ['balance', 'sticky', 'health', 'connections', 'maxFails', 'failTimeout', 'tries', 'failoverTimeout', 'retryNonIdempotent', 'tls', 'slowStart',
  'discover'] as const
const HOOKS = ['authorize', 'onError', 'onResponse'] as const
const TOP_LEVEL = new Set(['target', 'upstreams', 'routes', 'headers', 'trustProxy', 'proxyProtocol', 'timeouts', 'limits', 'upgrades', 'status',
  ...HOOKS, 'logger', ...POOL_KEYS, 'origins', 'requireOrigin'])

function fail (path: string, rule: string): never {
  throw new InvalidOptionError(path, rule)
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function checkKeys (value: Record<string, unknown>, path: string, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (allowed.includes(key)) continue
    const prefix = path === '' ? '' : `${path}.`
    // The renamed options were all top-level; deeper down the same names mean nothing of the kind.
    const hint = path === '' ? RENAMED[key] : undefined
    fail(`${prefix}${key}`, hint === undefined ? `is not an option (expected one of: ${allowed.join(', ')})` : `is not an option; use ${hint}`)
  }
}

/** An integer option; in ms it may not pass Node's largest timer delay (a longer one fires after 1 ms, so a huge timeout would act as a tiny one). */
function integer (value: unknown, path: string, fallback: number, min: number, unit = ''): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) fail(path, `must be an integer >= ${min}${unit}`)
  if (unit === ' (ms)' && value > MAX_TIMER_MS) fail(path, `must be at most ${MAX_TIMER_MS} (ms), the longest delay a Node timer supports`)
  return value
}

function normalizeUrl (value: unknown, path: string): string {
  if (typeof value !== 'string') fail(path, 'must be a URL string such as "http://127.0.0.1:5001"')
  let url: URL
  try {
    url = new URL(value)
  } catch {
    fail(path, `must be a URL such as "http://127.0.0.1:5001" (got ${JSON.stringify(value)})`)
  }
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol)) fail(path, `must use http:, https:, ws: or wss: (got ${url.protocol})`)
  if (url.username !== '' || url.password !== '') fail(path, 'must not carry credentials; use headers.set for an Authorization header')
  if (url.pathname !== '/' || url.search !== '') fail(path, 'must be an origin only (no path or query); use routes[].stripPrefix to change paths')
  return url.origin
}

export function normalizeServer (value: ServerOption, path: string): ServerSpec {
  if (typeof value === 'string') return { url: normalizeUrl(value, path), name: null, weight: 1, backup: false, down: false, maxConns: 0 }
  if (!isObject(value)) fail(path, 'must be a URL string or { url, name?, weight?, backup?, down?, maxConns? }')
  checkKeys(value, path, ['url', 'name', 'weight', 'backup', 'down', 'maxConns'])
  if (value.name !== undefined && !isServerName(value.name)) {
    fail(`${path}.name`, 'must be 1 to 64 letters, digits, ".", "_" or "-" (it is shown in logs and metrics labels)')
  }
  for (const flag of ['backup', 'down'] as const) {
    if (value[flag] !== undefined && typeof value[flag] !== 'boolean') fail(`${path}.${flag}`, 'must be a boolean')
  }
  return {
    url: normalizeUrl(value.url, `${path}.url`),
    name: value.name ?? null,
    weight: integer(value.weight, `${path}.weight`, 1, 1),
    backup: value.backup ?? false,
    down: value.down ?? false,
    maxConns: integer(value.maxConns, `${path}.maxConns`, 0, 0),
  }
}

function normalizeBalance (value: unknown, path: string): BalanceOption {
  if (value === undefined) return 'round-robin'
  if (value === 'round-robin' || value === 'least-conn' || value === 'ip-hash' || value === 'random-two') return value
  if (isObject(value) && typeof value.hash === 'function') return { hash: value.hash as (req: IncomingMessage) => string }
  fail(path, "must be 'round-robin', 'least-conn', 'ip-hash', 'random-two' or { hash: (req) => string }")
}

function normalizeHealth (value: HealthOptions | undefined, path: string): NormalizedHealth | null {
  if (value === undefined) return null
  if (!isObject(value)) fail(path, 'must be an object such as { interval: 3000, rise: 2, fall: 3, timeout: 1000, type: "tcp" }')
  checkKeys(value, path, ['interval', 'rise', 'fall', 'timeout', 'type', 'path', 'expectStatus', 'expectBody'])
  const type = value.type ?? DEFAULT_HEALTH.type
  if (type !== 'tcp' && type !== 'http' && type !== 'engine.io') fail(`${path}.type`, "must be 'tcp', 'http' or 'engine.io'")
  const probePath = value.path ?? (type === 'engine.io' ? '/socket.io/' : '/')
  if (typeof probePath !== 'string' || !probePath.startsWith('/')) fail(`${path}.path`, 'must be a path starting with "/"')
  let expectStatus: readonly [number, number] = [200, 399]
  if (typeof value.expectStatus === 'number') expectStatus = [value.expectStatus, value.expectStatus]
  else if (Array.isArray(value.expectStatus) && value.expectStatus.length === 2) expectStatus = [value.expectStatus[0], value.expectStatus[1]]
  else if (value.expectStatus !== undefined) fail(`${path}.expectStatus`, 'must be a status or a [low, high] range')
  const isStatus = (n: unknown): boolean => Number.isInteger(n) && (n as number) >= 100 && (n as number) <= 599
  if (!isStatus(expectStatus[0]) || !isStatus(expectStatus[1]) || expectStatus[0] > expectStatus[1]) {
    fail(`${path}.expectStatus`, 'must be a status (100-599) or a [low, high] range of them with low <= high')
  }
  if (value.expectBody !== undefined && typeof value.expectBody !== 'string' && !(value.expectBody instanceof RegExp)) {
    fail(`${path}.expectBody`, 'must be a string or a RegExp')
  }
  const interval = integer(value.interval, `${path}.interval`, DEFAULT_HEALTH.interval, 100, ' (ms)')
  const timeout = integer(value.timeout, `${path}.timeout`, Math.min(DEFAULT_HEALTH.timeout, interval), 1, ' (ms)')
  if (timeout > interval) fail(`${path}.timeout`, `must not exceed ${path}.interval (${interval} ms)`)
  return {
    interval,
    rise: integer(value.rise, `${path}.rise`, DEFAULT_HEALTH.rise, 1),
    fall: integer(value.fall, `${path}.fall`, DEFAULT_HEALTH.fall, 1),
    timeout,
    type,
    path: probePath,
    expectStatus,
    expectBody: value.expectBody instanceof RegExp ? statelessRegExp(value.expectBody) : value.expectBody ?? null,
  }
}

/** A DNS name: dot-separated labels of letters, digits, `-` and `_` (SRV names start with `_service._proto`). */
const DNS_NAME = /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/

function normalizeDiscover (value: DiscoverOptions | undefined, path: string): NormalizedDiscover | null {
  if (value === undefined) return null
  if (!isObject(value)) fail(path, "must be an object such as { dns: 'socket-nodes.default.svc.cluster.local', port: 5000 }")
  checkKeys(value, path, ['dns', 'port', 'srv', 'interval', 'resolver', 'drainTimeout'])
  if (typeof value.dns !== 'string' || !DNS_NAME.test(value.dns)) fail(`${path}.dns`, "must be a DNS name such as 'socket-nodes.default.svc.cluster.local'")
  if (value.srv !== undefined && typeof value.srv !== 'boolean') fail(`${path}.srv`, 'must be a boolean')
  const srv = value.srv ?? false
  if (srv && value.port !== undefined) fail(`${path}.port`, 'must be left out with srv: true; each SRV record gives its own port')
  if (!srv && value.port === undefined) fail(`${path}.port`, 'is required: A and AAAA records carry no port (or set srv: true to read ports from SRV records)')
  const port = srv ? null : integer(value.port, `${path}.port`, 0, 1)
  if (port !== null && port > 65_535) fail(`${path}.port`, 'must be a TCP port from 1 to 65535')
  let resolver: string[] | null = null
  if (value.resolver !== undefined) {
    if (!Array.isArray(value.resolver) || value.resolver.length === 0) fail(`${path}.resolver`, "must be a non-empty list of DNS servers such as ['10.96.0.10', '127.0.0.1:5353']")
    resolver = value.resolver.map((entry, i) => resolverAddress(entry, `${path}.resolver[${i}]`))
  }
  return {
    dns: value.dns.endsWith('.') ? value.dns.slice(0, -1) : value.dns,
    port,
    srv,
    interval: integer(value.interval, `${path}.interval`, DEFAULT_DISCOVER.interval, 100, ' (ms)'),
    resolver,
    drainTimeout: integer(value.drainTimeout, `${path}.drainTimeout`, DEFAULT_DISCOVER.drainTimeout, 0, ' (ms)'),
  }
}

/** One DNS server: an IP address, `IPv4:port` or `[IPv6]:port`, the forms `Resolver.setServers()` accepts. */
function resolverAddress (value: unknown, path: string): string {
  const rule = "must be an IP address, 'ip:port' or '[ipv6]:port'"
  if (typeof value !== 'string') fail(path, rule)
  if (isIP(value) !== 0) return value
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value)
  const host = match?.[1] ?? match?.[2]
  const port = Number(match?.[3])
  if (host === undefined || isIP(host) === 0 || (match?.[1] !== undefined && isIP(host) !== 6) || port < 1 || port > 65_535) {
    fail(path, `${rule} (got ${JSON.stringify(value)})`)
  }
  return value
}

/**
 * `serversPath` is where the user wrote the server list: `upstreams.NAME.servers`, or `target` for the
 * shorthand, whose single (not array) value is named `target` itself.
 */
function normalizeUpstream (name: string, value: UpstreamOptions, path: string, failoverDefault: number,
  serversPath = `${path}.servers`, single = false): NormalizedUpstream {
  // The shorthand's pool options stand at the top level, so their paths have no prefix.
  const at = path === '' ? '' : `${path}.`
  // Checked as unknown: every key of UpstreamOptions is optional, and narrowing such a type would lose its fields.
  if (!isObject(value as unknown)) fail(path, 'must be an object such as { servers: ["http://127.0.0.1:5001"] }')
  if (path !== '') checkKeys(value as unknown as Record<string, unknown>, path, ['servers', ...POOL_KEYS])
  const discover = normalizeDiscover(value.discover, `${at}discover`)
  // With discovery, the configured list may be empty or left out: the DNS answer fills the pool.
  const listed = discover !== null && value.servers === undefined ? [] : value.servers
  if (!Array.isArray(listed) || (listed.length === 0 && discover === null)) {
    fail(serversPath, 'must be a non-empty array of URLs or { url, weight } (or give discover to find them in DNS)')
  }
  const servers = listed.map((s, i) => normalizeServer(s, single ? serversPath : `${serversPath}[${i}]`))
  const seen = new Set<string>()
  const names = new Set<string>()
  for (const [i, s] of servers.entries()) {
    if (seen.has(s.url)) fail(`${serversPath}[${i}]`, `repeats ${s.url}; list each server once and use weight`)
    seen.add(s.url)
    if (s.name !== null && names.has(s.name)) fail(`${serversPath}[${i}].name`, `repeats ${JSON.stringify(s.name)}; give each server its own name`)
    if (s.name !== null) names.add(s.name)
  }
  if (servers.length > 0 && discover === null && servers.every((s) => s.backup)) fail(serversPath, 'must have at least one server that is not a backup')

  // Socket.IO long-polling breaks on a pool of several servers unless each session stays on its server.
  const engineIoDefault = servers.length >= 2 || discover !== null
  let sticky: NormalizedSticky = { engineIo: engineIoDefault, store: null, cookie: null }
  if (value.sticky !== undefined) {
    if (!isObject(value.sticky)) fail(`${at}sticky`, "must be { engineIo?: true | { store }, cookie?: 'name' | { name, secret?, maxAge? } }")
    checkKeys(value.sticky, `${at}sticky`, ['engineIo', 'cookie'])
    const cookie = value.sticky.cookie
    let cookieSpec: NormalizedSticky['cookie'] = null
    if (cookie !== undefined) {
      const spec = typeof cookie === 'string' ? { name: cookie } : cookie
      if (!isObject(spec) || typeof spec.name !== 'string' || !isToken(spec.name)) {
        fail(`${at}sticky.cookie`, 'must be a cookie name (an RFC 6265 token) or { name, secret?, maxAge? }')
      }
      if (spec.secret !== undefined && (typeof spec.secret !== 'string' || spec.secret.length < 16)) {
        fail(`${at}sticky.cookie.secret`, 'must be a string of at least 16 characters')
      }
      // Processes would each sign with what they derive: one stray config difference and cookies stop
      // matching, and the derived value is no secret. Several processes must be told the same one.
      if (spec.secret === undefined && cluster.isWorker) {
        fail(`${at}sticky.cookie.secret`, 'is required in a node:cluster worker (sockgate/cluster, PM2 cluster mode): give every ' +
          'process the same secret of 16+ characters, e.g. secret: process.env.STICKY_SECRET, so each honours the others\' cookies')
      }
      cookieSpec = {
        name: spec.name,
        secret: spec.secret ?? defaultStickySecret(name, servers.map((s) => s.url)),
        maxAge: spec.maxAge === undefined ? null : integer(spec.maxAge, `${at}sticky.cookie.maxAge`, 0, 1, ' (s)'),
      }
    }
    const engineIo = value.sticky.engineIo
    let store: SessionStore | null = null
    if (isObject(engineIo)) {
      checkKeys(engineIo, `${at}sticky.engineIo`, ['store'])
      if (engineIo.store !== undefined) {
        store = redisSessionStore(engineIo.store) ??
          fail(`${at}sticky.engineIo.store`, 'must be an ioredis or node-redis (v4/v5) client: an object with get, set, del and ' +
            'pexpire and a status (ioredis), or get, set, del and pExpire and isReady (node-redis)')
      }
    } else if (engineIo !== undefined && typeof engineIo !== 'boolean') {
      fail(`${at}sticky.engineIo`, 'must be a boolean or { store }')
    }
    sticky = { engineIo: engineIo === undefined ? engineIoDefault : engineIo !== false, store, cookie: cookieSpec }
  }
  // Under sockgate/cluster the workers learn into one table the primary keeps, as nginx's workers share a zone:
  // a polling client's next connection may go to any worker.
  if (sticky.engineIo && sticky.store === null) sticky = { ...sticky, store: boxSessionStore() }
  if (value.tls !== undefined && !isObject(value.tls)) fail(`${at}tls`, 'must be { ca?, rejectUnauthorized?, servername? }')
  if (value.tls !== undefined) {
    checkKeys(value.tls, `${at}tls`, ['ca', 'rejectUnauthorized', 'servername'])
    const { ca, rejectUnauthorized, servername } = value.tls
    const isPem = (c: unknown): boolean => typeof c === 'string' || Buffer.isBuffer(c)
    if (ca !== undefined && !isPem(ca) && !(Array.isArray(ca) && ca.every(isPem))) fail(`${at}tls.ca`, 'must be a PEM string, a Buffer, or a list of them')
    if (rejectUnauthorized !== undefined && typeof rejectUnauthorized !== 'boolean') fail(`${at}tls.rejectUnauthorized`, 'must be a boolean')
    if (servername !== undefined && (typeof servername !== 'string' || servername === '')) fail(`${at}tls.servername`, 'must be a host name')
  }
  if (value.retryNonIdempotent !== undefined && typeof value.retryNonIdempotent !== 'boolean') fail(`${at}retryNonIdempotent`, 'must be a boolean')
  const balance = normalizeBalance(value.balance, `${at}balance`)
  const slowStart = integer(value.slowStart, `${at}slowStart`, 0, 0, ' (ms)')
  // A hash method places a client by the ring, not by weight shares: ramping a weight would move clients between
  // servers (the ring is rebuilt per weight) rather than slow the newcomer down. nginx refuses the pair too.
  if (slowStart > 0 && (balance === 'ip-hash' || typeof balance === 'object')) {
    fail(`${at}slowStart`, "cannot be combined with balance 'ip-hash' or { hash }; use 'round-robin', 'least-conn' or 'random-two'")
  }

  return {
    name,
    servers,
    discover,
    balance,
    sticky,
    health: normalizeHealth(value.health, `${at}health`),
    connections: integer(value.connections, `${at}connections`, DEFAULT_CONNECTIONS, 1),
    retryNonIdempotent: value.retryNonIdempotent ?? false,
    maxFails: integer(value.maxFails, `${at}maxFails`, DEFAULT_MAX_FAILS, 0),
    failTimeout: integer(value.failTimeout, `${at}failTimeout`, DEFAULT_FAIL_TIMEOUT, 1, ' (ms)'),
    // A discovered pool's size changes; failover stops anyway once every server was tried, so no cap is the same rule.
    tries: integer(value.tries, `${at}tries`, discover === null ? servers.length : Number.POSITIVE_INFINITY, 1),
    failoverTimeout: integer(value.failoverTimeout, `${at}failoverTimeout`, failoverDefault, 1, ' (ms)'),
    tls: value.tls === undefined ? null : copyTls(value.tls),
    slowStart,
  }
}

/**
 * `re` without the g and y flags: with either, a RegExp keeps `lastIndex`
 * between test() calls and would match every other request (or probe).
 * Compiled once here, so every matcher the options hold is stateless.
 */
function statelessRegExp (re: RegExp): RegExp {
  return re.global || re.sticky ? new RegExp(re.source, re.flags.replace(/[gy]/g, '')) : re
}

/** The pool's own copy of `tls`, so freezing the options leaves the caller's object (and `ca` list) alone. */
function copyTls (tls: UpstreamTlsOptions): UpstreamTlsOptions {
  return Array.isArray(tls.ca) ? { ...tls, ca: [...tls.ca] } : { ...tls }
}

function normalizeHost (value: unknown, path: string): HostMatcher {
  if (value === undefined) return { kind: 'any' }
  if (value instanceof RegExp) return { kind: 'regexp', re: statelessRegExp(value) }
  if (typeof value !== 'string' || value === '' || /[\s/]/.test(value)) fail(path, "must be a host name, '*.example.com' or a RegExp")
  const host = hostNameOption(value, path)
  if (host.includes('*') && !/^\*\.[^*]+$/.test(host)) fail(path, `may use * only as a whole first label, as in '*.example.com' (got ${JSON.stringify(value)})`)
  if (host.startsWith('*.')) return { kind: 'suffix', suffix: host.slice(1) }
  return { kind: 'exact', host }
}

/**
 * A host name option, lower-cased. Routes and the status page match the Host
 * header's name only (as nginx server_name does), so a port here could never
 * match and is refused.
 */
function hostNameOption (value: string, path: string): string {
  const host = value.toLowerCase()
  if (/:\d*$/.test(host) && !host.endsWith(']')) fail(path, `must be a host name without a port (got ${JSON.stringify(value)}); the port of the Host header is ignored`)
  return host
}

function normalizeRoute (value: RouteOptions, path: string, pools: ReadonlySet<string>): NormalizedRoute {
  if (!isObject(value)) fail(path, 'must be { host?, path?, upstream, stripPrefix?, log? }')
  checkKeys(value, path, ['host', 'path', 'upstream', 'stripPrefix', 'log'])
  if (typeof value.upstream !== 'string' || !pools.has(value.upstream)) {
    fail(`${path}.upstream`, `must name a pool in upstreams (one of: ${[...pools].join(', ')})`)
  }
  const prefix = value.path ?? '/'
  if (typeof prefix !== 'string' || !prefix.startsWith('/') || /[?#\s]/.test(prefix)) fail(`${path}.path`, 'must be a path prefix starting with "/"')
  if (value.stripPrefix !== undefined && typeof value.stripPrefix !== 'boolean') fail(`${path}.stripPrefix`, 'must be a boolean')
  if (value.log !== undefined && typeof value.log !== 'boolean') fail(`${path}.log`, 'must be a boolean')
  return {
    host: normalizeHost(value.host, `${path}.host`),
    path: prefix,
    upstream: value.upstream,
    stripPrefix: value.stripPrefix ?? false,
    log: value.log ?? true,
  }
}

function normalizeTrust (value: unknown): TrustPredicate {
  // compileTrust() validates while it compiles, names the entry at fault (trustProxy[1]) and answers a
  // comma-separated string with the list to write instead.
  return compileTrust((value ?? false) as boolean | number | string[], 'trustProxy')
}

function normalizeProxyProtocol (value: unknown): NormalizedProxyProtocol | null {
  if (value === undefined) return null
  if (!isObject(value)) fail('proxyProtocol', "must be { trusted: ['10.0.0.0/8', ...], timeout? }")
  checkKeys(value, 'proxyProtocol', ['trusted', 'timeout'])
  const trusted = value.trusted
  if (!Array.isArray(trusted) || trusted.length === 0) {
    fail('proxyProtocol.trusted', "must list the load balancers' addresses or CIDRs, e.g. ['10.0.0.0/8']")
  }
  return {
    // The entries are those of trustProxy, checked and named (proxyProtocol.trusted[1]) the same way.
    trusted: compileTrust(trusted as string[], 'proxyProtocol.trusted'),
    trustedList: (trusted as string[]).map((entry) => entry.trim()),
    timeout: integer(value.timeout, 'proxyProtocol.timeout', DEFAULT_PROXY_PROTOCOL_TIMEOUT, 1, ' (ms)'),
  }
}

function normalizePerClient (value: unknown): NormalizedPerClient | null {
  if (value === undefined) return null
  const path = 'limits.perClient'
  if (!isObject(value)) fail(path, 'must be { connections?, requestsPerSecond?, burst?, upgradesPerMinute?, maxClients? }')
  checkKeys(value, path, ['connections', 'requestsPerSecond', 'burst', 'upgradesPerMinute', 'maxClients'])
  const rps = value.requestsPerSecond
  // A rate below one per second is a real setting (nginx's r/m), so any positive number will do.
  if (rps !== undefined && (typeof rps !== 'number' || !Number.isFinite(rps) || rps <= 0)) fail(`${path}.requestsPerSecond`, 'must be a number > 0 (0.5 is one request every 2 s)')
  if (value.burst !== undefined && rps === undefined) fail(`${path}.burst`, 'needs requestsPerSecond: it is the burst above that rate')
  const opt = (key: string): number | null => value[key] === undefined ? null : integer(value[key], `${path}.${key}`, 0, 1)
  const spec = {
    connections: opt('connections'),
    requestsPerSecond: rps ?? null,
    // One second's worth may come at once (nginx's own default burst is 0: one request per 1/rate).
    burst: rps === undefined ? 0 : integer(value.burst, `${path}.burst`, Math.ceil(rps), 0),
    upgradesPerMinute: opt('upgradesPerMinute'),
    maxClients: integer(value.maxClients, `${path}.maxClients`, DEFAULT_MAX_CLIENTS, 1),
  }
  if (spec.connections === null && spec.requestsPerSecond === null && spec.upgradesPerMinute === null) {
    fail(path, 'must set at least one of connections, requestsPerSecond and upgradesPerMinute')
  }
  return spec
}

function normalizeStatus (value: unknown): NormalizedOptions['status'] {
  if (value === undefined || value === false) return null
  const spec = value === true ? {} : value
  if (!isObject(spec)) fail('status', 'must be false, true or { path?, host?, auth? }')
  checkKeys(spec, 'status', ['path', 'host', 'auth'])
  const path = spec.path ?? DEFAULT_STATUS_PATH
  if (typeof path !== 'string' || !path.startsWith('/')) fail('status.path', 'must be a path starting with "/"')
  if (spec.host !== undefined && typeof spec.host !== 'string') fail('status.host', 'must be a host name')
  if (spec.auth !== undefined && typeof spec.auth !== 'function') fail('status.auth', 'must be a function (req) => boolean | Promise<boolean>')
  const host = spec.host === undefined ? null : hostNameOption(spec.host, 'status.host')
  return { path, host, auth: (spec.auth as StatusOptions['auth']) ?? null }
}

/**
 * The one options pass: validate `createGateway()`'s options, fill defaults
 * from the `DEFAULT_*` constants, compile every rule-like option once (the
 * `trustProxy` predicate, the header set/remove name sets, the route host
 * matchers, the Upgrade token set), and return an object frozen all the way
 * down that the hot paths read without checking again. The only place
 * options are validated; `headers` and `trustProxy` are compiled by helpers
 * of their own modules, called from here. Throws `InvalidOptionError`
 * naming the option path and the rule.
 */
export function normalizeOptions (options: GatewayOptions): NormalizedOptions {
  if (!isObject(options)) fail('options', 'must be an object with target or upstreams')
  checkKeys(options, '', [...TOP_LEVEL])

  const t = options.timeouts ?? {}
  if (!isObject(t)) fail('timeouts', 'must be { connect?, handshake?, request?, send?, idle?, maxLifetime? }')
  checkKeys(t, 'timeouts', ['connect', 'handshake', 'request', 'send', 'idle', 'maxLifetime'])
  const timeouts = {
    connect: integer(t.connect, 'timeouts.connect', DEFAULT_TIMEOUTS.connect, 1, ' (ms)'),
    handshake: integer(t.handshake, 'timeouts.handshake', DEFAULT_TIMEOUTS.handshake, 1, ' (ms)'),
    request: integer(t.request, 'timeouts.request', DEFAULT_TIMEOUTS.request, 1, ' (ms)'),
    send: integer(t.send, 'timeouts.send', DEFAULT_TIMEOUTS.send, 1, ' (ms)'),
    idle: integer(t.idle, 'timeouts.idle', DEFAULT_TIMEOUTS.idle, 0, ' (ms)'),
    maxLifetime: integer(t.maxLifetime, 'timeouts.maxLifetime', DEFAULT_TIMEOUTS.maxLifetime, 0, ' (ms)'),
  }
  if (timeouts.maxLifetime > 0 && timeouts.maxLifetime < MIN_MAX_LIFETIME) {
    fail('timeouts.maxLifetime', `must be 0 (no limit) or at least ${MIN_MAX_LIFETIME} (ms)`)
  }
  const l = options.limits ?? {}
  if (!isObject(l)) fail('limits', 'must be { body?, perClient? }')
  checkKeys(l, 'limits', ['body', 'perClient'])
  const limits = { body: integer(l.body, 'limits.body', DEFAULT_BODY_LIMIT, 0, ' (bytes)'), perClient: normalizePerClient(l.perClient) }

  let upstreamSpecs: Record<string, UpstreamOptions>
  // `discover` alone stands for `target` too: the one pool's servers all come from DNS.
  const shorthand = options.target !== undefined || (options.discover !== undefined && options.upstreams === undefined)
  if (shorthand) {
    if (options.upstreams !== undefined) fail('target', 'cannot be combined with upstreams; put the servers in a pool instead')
    const pool: UpstreamOptions = options.target === undefined ? {} : { servers: Array.isArray(options.target) ? options.target : [options.target] }
    for (const key of POOL_KEYS) if (options[key] !== undefined) (pool as unknown as Record<string, unknown>)[key] = options[key]
    upstreamSpecs = { [DEFAULT_POOL]: pool }
  } else {
    const misplaced = POOL_KEYS.find((key) => options[key] !== undefined)
    if (misplaced !== undefined) fail(misplaced, 'is a pool option: give it beside target, or inside a pool of upstreams')
    if (!isObject(options.upstreams) || Object.keys(options.upstreams).length === 0) {
      fail('upstreams', 'must name at least one pool, e.g. { socket_nodes: { servers: ["http://127.0.0.1:5001"] } } (or use target)')
    }
    upstreamSpecs = options.upstreams as Record<string, UpstreamOptions>
  }
  // Time for one hung handshake and one more attempt: a server that accepts and never answers an upgrade
  // is then passed over within the default, as nginx's `proxy_next_upstream timeout` does.
  const failoverDefault = timeouts.connect + timeouts.handshake
  const upstreams = Object.entries(upstreamSpecs).map(([name, spec]) => !shorthand
    ? normalizeUpstream(name, spec, `upstreams.${name}`, failoverDefault)
    : normalizeUpstream(name, spec, '', failoverDefault, 'target', !Array.isArray(options.target)))
  const poolNames = new Set(upstreams.map((u) => u.name))

  let routes: NormalizedRoute[]
  if (options.routes !== undefined) {
    if (!Array.isArray(options.routes) || options.routes.length === 0) {
      fail('routes', 'must be a non-empty array of { host?, path?, upstream } (omit it to send everything to a single pool)')
    }
    routes = options.routes.map((r, i) => normalizeRoute(r, `routes[${i}]`, poolNames))
  } else if (upstreams.length === 1) {
    routes = [{ host: { kind: 'any' }, path: '/', upstream: upstreams[0]!.name, stripPrefix: false, log: true }]
  } else {
    fail('routes', 'must be given when there is more than one pool')
  }

  const upgrades = options.upgrades ?? DEFAULT_UPGRADES
  if (!Array.isArray(upgrades) || upgrades.some((u) => typeof u !== 'string' || !isToken(u))) {
    fail('upgrades', "must be a list of Upgrade tokens such as ['websocket']")
  }

  const normalized = {
    upstreams,
    routes,
    headers: normalizeHeaderOptions(options.headers as GatewayOptions['headers']),
    trust: normalizeTrust(options.trustProxy),
    timeouts,
    proxyProtocol: normalizeProxyProtocol(options.proxyProtocol),
    limits,
    upgrades: new Set(upgrades.map((u) => u.toLowerCase())),
    status: normalizeStatus(options.status),
    originAllowed: compileOrigins(options.origins, options.requireOrigin),
    ...normalizeHooks(options),
  }
  // The logger is the caller's object (pino, app.log, console): referenced as it is, never frozen.
  return Object.freeze({ ...deepFreeze(normalized), logger: normalizeLogger(options.logger) })
}

/**
 * Freezes `value` and every array and plain object inside it, so nothing of
 * the normalized options changes after the one pass. Functions, RegExps,
 * Sets and Buffers are left as they are: hooks and RegExp hosts are the
 * caller's, a RegExp keeps `lastIndex`, a Buffer cannot be frozen, and
 * freezing a Set would not stop `add()` (the types say `ReadonlySet`).
 */
function deepFreeze<T> (value: T): T {
  if (Array.isArray(value) || isPlainObject(value)) {
    for (const nested of Object.values(value)) deepFreeze(nested)
    Object.freeze(value)
  }
  return value
}

function normalizeHooks (options: GatewayOptions): Pick<NormalizedOptions, typeof HOOKS[number]> {
  for (const key of HOOKS) {
    if (options[key] !== undefined && typeof options[key] !== 'function') fail(key, 'must be a function')
  }
  return { authorize: options.authorize ?? null, onError: options.onError ?? null, onResponse: options.onResponse ?? null }
}

function normalizeLogger (value: unknown): Logger | null {
  if (value === undefined) return null
  const methods = ['info', 'warn', 'error', 'debug'] as const
  if (!isObject(value) || methods.some((m) => typeof value[m] !== 'function')) {
    fail('logger', 'must be a pino-compatible logger with info, warn, error and debug methods (pino(), app.log, console)')
  }
  return value as unknown as Logger
}

/** `startCluster()`'s options after validation (sockgate/cluster). */
export interface NormalizedClusterOptions<S> {
  readonly workers: number
  readonly start: S
  readonly drain: number
  readonly logger: Logger | null
}

/** Default of `startCluster({ drain })`: under Kubernetes' 30 s grace period, with room to close up. */
export const DEFAULT_CLUSTER_DRAIN = 10_000

/** Validate `startCluster()`'s options, with the same rules and messages as the gateway's. */
export function normalizeClusterOptions<S> (options: { workers?: number, start: S, drain?: number, logger?: Logger },
  defaultWorkers: number): NormalizedClusterOptions<S> {
  if (!isObject(options)) fail('options', 'must be { workers?, start, drain?, logger? }')
  // Not checkKeys(): its hints for renamed gateway options would mislead here.
  const unknown = Object.keys(options).find((key) => !['workers', 'start', 'drain', 'logger'].includes(key))
  if (unknown !== undefined) fail(unknown, 'is not an option of startCluster() (expected one of: workers, start, drain, logger)')
  if (typeof options.start !== 'function') fail('start', 'must be a function that starts the app and returns { gateway, server }')
  return {
    workers: integer(options.workers, 'workers', defaultWorkers, 1),
    start: options.start,
    drain: integer(options.drain, 'drain', DEFAULT_CLUSTER_DRAIN, 0, ' (ms)'),
    logger: normalizeLogger(options.logger),
  }
}
