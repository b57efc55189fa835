import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'

/** One upstream server: a URL string, or an object with balancing settings. */
export type ServerOption = string | ServerConfig

/** An upstream server with its balancing settings (nginx `server ... weight= backup down max_conns=`). */
export interface ServerConfig {
  /** `http:`, `https:`, `ws:` or `wss:` URL of the server; only origin counts. */
  url: string
  /** A name for the server (`'node-1'`), shown in status, metrics labels and logs. Default: none (the URL is shown). */
  name?: string
  /** Share of new work relative to the other servers. Default: `1`. */
  weight?: number
  /** Used only when every primary server is unavailable. Default: `false`. */
  backup?: boolean
  /** Kept in the configuration but never picked. Default: `false`. */
  down?: boolean
  /** Cap on open tunnels + in-flight requests; past it the next server is tried. Default: `0` (no cap). */
  maxConns?: number
}

/** Balancing method of a pool. */
export type BalanceOption =
  | 'round-robin'
  | 'least-conn'
  | 'ip-hash'
  | 'random-two'
  | { hash: (req: IncomingMessage) => string }

/** Stickiness layered on top of the balancing method. */
export interface StickyOptions {
  /**
   * Route `?sid=` to the server that holds the session: by the server `name` a sid from `engineIoId()` carries,
   * else as learnt from polling handshakes; `{ store }` shares what is learnt with every gateway through Redis.
   * Default: `true` for a pool of two or more servers (Socket.IO long-polling needs it), else `false`.
   */
  engineIo?: boolean | EngineIoStickyOptions
  /** Name of a signed cookie that pins a client to a server, or the cookie settings. Default: none. */
  cookie?: string | { name: string, secret?: string, maxAge?: number }
}

/** Engine.io stickiness with the learnt sessions shared by every gateway. */
export interface EngineIoStickyOptions {
  /**
   * An ioredis or node-redis (v4/v5) client, connected by you: learnt sessions are written to it (key
   * `sockgate:sid:<pool>:<sid>`, expiring after 2 minutes unused) and read from it on a local miss. Default: none.
   */
  store?: object
}

/** Active health checks of a pool. */
export interface HealthOptions {
  /** Milliseconds between checks of one server. Default: `3000`. */
  interval?: number
  /** Consecutive successes that bring a down server up. Default: `2`. */
  rise?: number
  /** Consecutive failures that take a server down. Default: `3`. */
  fall?: number
  /** Milliseconds one check may take. Default: `1000`. */
  timeout?: number
  /** What a check does. Default: `'tcp'`. */
  type?: 'tcp' | 'http' | 'engine.io'
  /** Path probed by `http` (default `/`) and `engine.io` (default `/socket.io/`) checks. */
  path?: string
  /** Statuses that count as healthy for `http` checks. Default: `[200, 399]`. */
  expectStatus?: number | [number, number]
  /** Text or pattern the body must contain for `http` checks. Default: none. */
  expectBody?: string | RegExp
}

/** TLS settings used when connecting to `https:`/`wss:` upstreams. */
export interface UpstreamTlsOptions {
  /** CA certificates to trust (PEM); like Node's own `ca`, they replace the bundled CAs. Default: Node's bundled CAs. */
  ca?: string | Buffer | Array<string | Buffer>
  /** Verify the upstream's certificate. Default: `true`. */
  rejectUnauthorized?: boolean
  /** SNI and certificate name to check. Default: the URL's host name. */
  servername?: string
}

/** A named pool of upstream servers (nginx `upstream NAME { ... }`). */
export interface UpstreamOptions {
  /** The servers of the pool; at least one. */
  servers: ServerOption[]
  /** Balancing method. Default: `'round-robin'`. */
  balance?: BalanceOption
  /** Stickiness on top of the method. Default: engine.io session ids for pools of two or more servers. */
  sticky?: StickyOptions
  /** Active health checks. Default: none (passive health only). */
  health?: HealthOptions
  /**
   * HTTP connections the gateway opens to each server at most; further requests wait for a free one (undici's
   * `connections`). Keep it above the peak number of concurrent long-polls per server. Default: `1024`.
   */
  connections?: number
  /** Failures within `failTimeout` that mark a server unavailable (nginx `max_fails`); `0` disables. Default: `1`. */
  maxFails?: number
  /** Window for `maxFails` and how long the server then stays unavailable, in ms. Default: `10000`. */
  failTimeout?: number
  /**
   * Send a request with a non-idempotent method (POST, PATCH, ...) to the next server even after a failing
   * server received it, which may run it twice (nginx `proxy_next_upstream non_idempotent`). Default: `false`.
   */
  retryNonIdempotent?: boolean
  /** Servers tried for one request or upgrade before giving up. Default: the number of servers. */
  tries?: number
  /** Total milliseconds spent on failover for one request or upgrade. Default: `timeouts.connect + timeouts.handshake`. */
  failoverTimeout?: number
  /** TLS settings for `https:`/`wss:` servers. */
  tls?: UpstreamTlsOptions
  /**
   * Milliseconds over which a server that comes back up (health checks, passive recovery, `markUp`, `undrain`) or
   * joins (`add`) grows from a tenth of its weight to all of it (nginx plus `slow_start`); not with `ip-hash` or
   * `{ hash }`. Default: `0` (full weight at once).
   */
  slowStart?: number
}

/** A route: which requests go to which pool (nginx `server_name` + `location`). */
export interface RouteOptions {
  /** Exact host, `*.example.com` (any depth), or a RegExp; omitted: any host. */
  host?: string | RegExp
  /** Path prefix; the longest matching prefix wins. Default: `'/'`. */
  path?: string
  /** Name of the pool in `upstreams`. */
  upstream: string
  /** Remove the route's path prefix before forwarding. Default: `false`. */
  stripPrefix?: boolean
  /** Write `logger` records for this route's requests and tunnels (nginx `access_log off` is `false`). Default: `true`. */
  log?: boolean
}

/** How request headers are rewritten for the upstream. */
export interface HeaderOptions {
  /** Set `X-Forwarded-For/Proto/Host/Port`. Default: `true`. */
  xForwarded?: boolean
  /** Set an RFC 7239 `Forwarded` header. Default: `false`. */
  forwarded?: boolean
  /** Set `X-Real-IP` to the client address. Default: `false`. */
  xRealIp?: boolean
  /** `'preserve'` the client's Host, use the `'upstream'`'s host:port, or a fixed value. Default: `'preserve'`. */
  host?: 'preserve' | 'upstream' | (string & {})
  /** Headers to set on every forwarded request (nginx `proxy_set_header`). Default: `{}`. */
  set?: Record<string, string>
  /** Headers to remove from every forwarded request. Default: `[]`. */
  remove?: string[]
}

/** Timeouts in milliseconds. */
export interface TimeoutOptions {
  /** Opening the TCP/TLS connection to the upstream. Default: `5000`. */
  connect?: number
  /** Waiting for the upstream's answer to an upgrade. Default: `10000`. */
  handshake?: number
  /**
   * Waiting for an HTTP answer, and for the upstream's next body chunk while the client keeps reading
   * (nginx `proxy_read_timeout`); outlives a Socket.IO long-poll. Default: `60000`.
   */
  request?: number
  /** A client that reads nothing of its answer for this long is cut, and the upstream request with it (nginx `send_timeout`). Default: `60000`. */
  send?: number
  /** Closing a tunnel with no traffic either way; `0` never (TCP keepalive on both sockets). Default: `0`. */
  idle?: number
  /**
   * Ending a tunnel this long after it opened, each at its own point within ±10%, so clients move onto new
   * servers and reconnect at different times; `0` never, else at least `1000`. Default: `0`.
   */
  maxLifetime?: number
}

/**
 * What one client may do, keyed by its address after `trustProxy` (one key per IPv4 address and per IPv6 /64);
 * past a limit, 429 with `Retry-After`, before any upstream is contacted. Each gateway process counts its own.
 */
export interface PerClientLimitOptions {
  /** HTTP requests in flight plus upgrades and open tunnels of one client at once (nginx `limit_conn`). Default: no limit. */
  connections?: number
  /** Proxied HTTP requests per second of one client, on average (nginx `limit_req rate=`). Default: no limit. */
  requestsPerSecond?: number
  /** Requests past the rate that may come at once, never delayed (nginx `burst=` with `nodelay`). Default: `requestsPerSecond`, rounded up. */
  burst?: number
  /** Upgrades one client may start per minute; a minute's worth may come at once. Default: no limit. */
  upgradesPerMinute?: number
  /** Clients tracked at once; past it an idle one not seen lately is forgotten (nginx's zone size). Default: `65536`. */
  maxClients?: number
}

/** Size limits in bytes, and per-client limits. */
export interface LimitOptions {
  /** Largest request body forwarded (nginx `client_max_body_size`). Default: `1048576`. */
  body?: number
  /** Per-client caps on connections, request rate and upgrade rate. Default: none. */
  perClient?: PerClientLimitOptions
}

/** The status page. */
export interface StatusOptions {
  /** Path of the page. Default: `'/sockgate/status'`. */
  path?: string
  /** Answer only on this host. Default: any host. */
  host?: string
  /** Decide whether a request may see the page. Default: allow. */
  auth?: (req: IncomingMessage) => boolean | Promise<boolean>
}

/**
 * What `authorize` answers: `true` lets the request or upgrade through; `false` is 403; a number is that
 * status; an object is that answer (`body` defaults to the status text).
 */
export type AuthorizeResult = boolean | number | { status: number, headers?: Record<string, string>, body?: string | Buffer }

/** A pino-compatible logger: sockgate calls `info`, `warn`, `error` and `debug` with `(fields, message)`. */
export interface Logger {
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
  error (obj: object, msg?: string): void
  debug (obj: object, msg?: string): void
}

/** Pool options that the `target` shorthand takes beside it at the top level. */
export type TargetPoolOptions = Omit<UpstreamOptions, 'servers'>

/** Options of `createGateway()`. */
export interface GatewayOptions extends TargetPoolOptions {
  /**
   * Shorthand for one pool (`default`) and one route (`/`). The pool options (`balance`, `sticky`, `health`,
   * `connections`, `maxFails`, `failTimeout`, `tries`, `failoverTimeout`, `retryNonIdempotent`, `tls`, `slowStart`) go
   * beside it at the top level.
   */
  target?: ServerOption | ServerOption[]
  /** Named pools of upstream servers. */
  upstreams?: Record<string, UpstreamOptions>
  /** Routes to the pools; with one pool and no routes, everything goes to it. */
  routes?: RouteOptions[]
  /** Request header rewriting. */
  headers?: HeaderOptions
  /** Which peers' forwarding headers to trust: `true`, a hop count, or a list of addresses/CIDRs. Default: `false`. */
  trustProxy?: boolean | number | string[]
  /** Timeouts in milliseconds. */
  timeouts?: TimeoutOptions
  /** Size limits in bytes, and per-client limits. */
  limits?: LimitOptions
  /** Upgrade tokens that may be tunnelled. Default: `['websocket']`. */
  upgrades?: string[]
  /** The status page: `true` or settings turn it on at `/sockgate/status`. Default: off. */
  status?: boolean | StatusOptions
  /**
   * Decide, before any upstream is contacted, whether a routed request or upgrade may go on (async allowed).
   * A throw answers 500 and is reported as `SOCKGATE_ERR_AUTHORIZE`. Default: everything passes.
   */
  authorize?: (req: IncomingMessage) => AuthorizeResult | Promise<AuthorizeResult>
  /**
   * Answer a failure yourself (an error page, say): called with the error, the request, and the response
   * (HTTP) or the raw socket (upgrade). If it leaves the client unanswered, the usual 4xx/5xx is sent.
   * Default: the usual answer.
   */
  onError?: (err: import('./errors.js').SockgateError, req: IncomingMessage, target: ServerResponse | Duplex) => void | Promise<void>
  /** Change the headers of a proxied HTTP answer before they are sent (CORS, say). Default: none. */
  onResponse?: (req: IncomingMessage, res: ServerResponse, headers: Record<string, string | string[]>) => void
  /** Where sockgate writes its records: tunnels, upstreams going down and up, errors. Default: none. */
  logger?: Logger
  /**
   * Origins whose pages may open WebSockets here: `'https://app.example.com'`, `'https://*.example.com'` (any
   * sub-domain, not the domain itself), `'null'`. Upgrades from others get 403. Default: every origin.
   */
  origins?: string[]
  /** Refuse (403) upgrades that carry no `Origin` at all; needs `origins`. Default: `false`. */
  requireOrigin?: boolean
}

/** State of an upstream server. */
export type ServerState = 'up' | 'down' | 'draining'

/** One server in `gateway.status()`. */
export interface ServerStatus {
  url: string
  /** The server's `name`, or null when it has none. */
  name: string | null
  state: ServerState
  reason: string | null
  weight: number
  backup: boolean
  activeTunnels: number
  activeRequests: number
  requests: number
  upgrades: number
  failures: number
  bytesIn: number
  bytesOut: number
  lastCheck: { at: number, ok: boolean, ms: number } | null
  /** sockgate/cluster only: the server's state in each worker that answered (`state` above is the least available). */
  workers?: Array<{ pid: number, state: ServerState, reason: string | null }>
}

/** Snapshot returned by `gateway.status()`. */
export interface GatewayStatus {
  pools: Record<string, { servers: ServerStatus[] }>
  tunnels: { open: number }
  /** sockgate/cluster only: the workers asked, and whether each answered in time (only those that did are counted). */
  cluster?: { workers: Array<{ pid: number, answered: boolean }> }
  /** With `limits.perClient`: clients tracked, and refusals since start by the setting that refused them. */
  perClient?: {
    clients: number
    refused: Record<import('./errors.js').ClientLimitName, number>
  }
}

/** Why a tunnel ended, as reported by `tunnel:close`. */
export type TunnelCloseReason = 'client-closed' | 'upstream-closed' | 'client-error' | 'upstream-error' | 'idle-timeout' | 'max-lifetime' | 'gateway-closed' | 'drained'

/** Payload of `tunnel:open`. */
export interface TunnelOpenEvent {
  pool: string
  /** The server's URL. */
  server: string
  /** The server's `name`, or null. */
  name: string | null
  path: string
  clientAddress: string
  /** True when the client's WebSocket came over HTTP/2 (RFC 8441, `gateway.attachHttp2()`); absent for HTTP/1.1. */
  http2?: true
}

/** Payload of `tunnel:close`. */
export interface TunnelCloseEvent extends TunnelOpenEvent {
  reason: TunnelCloseReason
  /** Bytes from the client to the upstream. */
  bytesIn: number
  /** Bytes from the upstream to the client. */
  bytesOut: number
  durationMs: number
  error?: Error
}

/** Payload of `proxy:error`. */
export interface ProxyErrorEvent {
  error: import('./errors.js').SockgateError
  kind: 'http' | 'upgrade'
  pool?: string
  /** The server's URL. */
  server?: string
  /** The server's `name`, or null. */
  name?: string | null
  method: string
  path: string
  clientAddress: string
}
