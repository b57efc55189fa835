import { EventEmitter } from 'node:events'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Http2SecureServer, Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import type { TLSSocket } from 'node:tls'
import type { Duplex } from 'node:stream'
import { ClientAbortedError, HookError, type SockgateError } from './errors.js'
import type { RewriteContext } from './headers.js'
import { ClientLimits, ClientState } from './limits.js'
import { GatewayLog, type UpstreamStateEvent } from './log.js'
import { normalizeOptions, type NormalizedOptions, type NormalizedRoute } from './options.js'
import { proxyRequest } from './proxy-request.js'
import { proxyUpgrade } from './proxy-upgrade.js'
import { isResponse, sendError, verdictAnswer, writeSocketError, type Answer } from './respond.js'
import { adoptHttp2Request, takeWebSocketStreams, type AnyHttp2Server } from './http2.js'
import { compileRoutes, stripPathPrefix, type RouteTable } from './route.js'
import { resolveClientAddress, unmapAddress } from './trust.js'
import { endSpread, type Tunnel } from './tunnel.js'
import { refuseConnect, registerUpgradeHandler } from './dispatch.js'
import { HealthChecker } from './health.js'
import { renderPrometheus } from './metrics.js'
import { compileStatusMatcher, isStatusPath, type StatusMatcher, type StatusProvider } from './status.js'
import { Pool } from './upstream/pool.js'
import { MAX_TIMER_MS, type UpstreamServer } from './upstream/server.js'
import type {
  GatewayOptions, GatewayStatus, ProxyErrorEvent, TunnelCloseEvent, TunnelOpenEvent,
} from './types.js'

/** Events a gateway emits, with their payloads. */
export interface GatewayEvents {
  'proxy:error': [ProxyErrorEvent]
  'tunnel:open': [TunnelOpenEvent]
  'tunnel:close': [TunnelCloseEvent]
  'upstream:down': [UpstreamStateEvent]
  'upstream:up': [UpstreamStateEvent]
}

/** Hands a failure to the caller instead of answering it (Express's `next(err)`). */
export type FailureHandler = (err: SockgateError) => void

/** Who the client is, as far as this hop can tell. */
export interface Peer {
  address: string
  trusted: boolean
  clientAddress: string
  encrypted: boolean
  localPort: number
}

/** Options of `gateway.close()`. */
export interface CloseOptions {
  /** Milliseconds open tunnels may keep running before they are ended. Default: `0`. */
  drain?: number
  /**
   * Milliseconds over which the tunnels still open after `drain` are ended, one after another and evenly,
   * so their clients do not all reconnect in the same second. Default: `0` (all at once).
   */
  spread?: number
}

/**
 * The framework-agnostic core: routes requests and upgrades to upstream
 * pools, forwards HTTP, tunnels WebSockets, and reports what happens as
 * events. Made by `createGateway()`.
 */
export class Gateway extends EventEmitter<GatewayEvents> {
  readonly options: NormalizedOptions
  /** @internal The routes, compiled once: what both data paths and the Fastify adapter route by. */
  readonly routes: RouteTable
  /** @internal The status page's request test, or null when there is no page. */
  private readonly statusMatcher: StatusMatcher | null
  private readonly pools = new Map<string, Pool>()
  /** @internal Every open tunnel, whatever its server: what `close()` ends. */
  readonly tunnels = new Set<Tunnel>()
  private readonly detachers = new Map<Server, () => void>()
  /** The node:http2 servers whose WebSocket streams this gateway takes (`attachHttp2`). */
  private readonly http2Detachers = new Map<AnyHttp2Server, () => void>()
  private readonly health: HealthChecker
  /** @internal */
  readonly log: GatewayLog | null
  /** @internal The `limits.perClient` table, or null when it is not set. */
  readonly clientLimits: ClientLimits | null
  private closing: Promise<void> | undefined
  /** @internal What the status page reads when it answers for a whole sockgate/cluster box; null: this gateway. */
  statusProvider: StatusProvider | null = null

  constructor (options: NormalizedOptions) {
    super()
    this.options = options
    this.routes = compileRoutes(options.routes)
    this.statusMatcher = options.status === null ? null : compileStatusMatcher(options.status)
    this.log = options.logger === null ? null : new GatewayLog(options.logger)
    this.clientLimits = options.limits.perClient === null ? null : new ClientLimits(options.limits.perClient)
    // Passive health, operators and active checks all report state changes the same way.
    const announce = (pool: string, server: UpstreamServer, up: boolean, reason: string): void => {
      const event = { pool, server: server.url, name: server.name, reason }
      this.log?.upstream(up, event)
      this.emit(up ? 'upstream:up' : 'upstream:down', event)
    }
    for (const spec of options.upstreams) {
      this.pools.set(spec.name, new Pool(spec, (server, up, reason) => announce(spec.name, server, up, reason), options.timeouts,
        // The request that noticed the store failing carries the report; it goes on balanced.
        (error, req) => this.report(error, req.headers.upgrade === undefined ? 'http' : 'upgrade', req, undefined, spec.name)))
    }
    this.health = new HealthChecker(this.pools.values(), (pool, server, up, reason) => announce(pool.name, server, up, reason))
    // Bound once, so `attach()` hands the same function to every server.
    this.handleUpgrade = this.handleUpgrade.bind(this)
    this.handleRequest = this.handleRequest.bind(this)
  }

  /** True once `close()` was called: everything new is answered 503. */
  get closed (): boolean {
    return this.closing !== undefined
  }

  /** The pool named `name`, for run-time changes (add, remove, markDown, markUp). */
  pool (name: string): Pool {
    const pool = this.pools.get(name)
    if (pool === undefined) throw new Error(`sockgate: no upstream pool named ${JSON.stringify(name)}`)
    return pool
  }

  /** @internal Who sent `req`: its peer, whether that peer is trusted, and the client address it stands for. */
  peerOf (req: IncomingMessage): Peer {
    const socket = req.socket
    const address = socket.remoteAddress ?? ''
    const trust = this.options.trust
    const trusted = trust(address, 0)
    const xff = req.headers['x-forwarded-for'] as string | undefined
    return {
      address,
      trusted,
      clientAddress: trusted ? resolveClientAddress(address, xff, trust) : unmapAddress(address),
      encrypted: (socket as TLSSocket).encrypted === true,
      localPort: socket.localPort ?? 0,
    }
  }

  /** @internal Tell `proxy:error` listeners and the log (unless the route has `log: false`) about a failure. */
  report (error: SockgateError, kind: 'http' | 'upgrade', req: IncomingMessage, peer: Peer | undefined,
    pool?: string, server?: UpstreamServer, route?: NormalizedRoute): void {
    const logged = this.log !== null && route?.log !== false
    if (!logged && this.listenerCount('proxy:error') === 0) return
    const event: ProxyErrorEvent = {
      error,
      kind,
      ...(pool === undefined ? {} : { pool }),
      ...(server === undefined ? {} : { server: server.url, name: server.name }),
      method: req.method ?? '',
      path: req.url ?? '',
      clientAddress: peer?.clientAddress ?? req.socket.remoteAddress ?? '',
    }
    if (logged) this.log?.proxyError(event)
    this.emit('proxy:error', event)
  }

  /** @internal The request target as the upstream gets it: the route's prefix taken off when it says so. */
  targetPath (route: NormalizedRoute, url: string): string {
    return route.stripPrefix ? stripPathPrefix(route.path, url) : url
  }

  /** @internal What the header rewriter needs to know about this hop for one request to `server`. */
  headerContext (peer: Peer, upgrade: string | null, server: UpstreamServer): RewriteContext {
    return {
      peerAddress: peer.address,
      encrypted: peer.encrypted,
      localPort: peer.localPort,
      trusted: peer.trusted,
      clientAddress: peer.clientAddress,
      upgrade,
      upstreamHost: server.hostHeader,
    }
  }

  /** @internal True when the status page answers a request for `host` and `url`. */
  isStatusRequest (host: string | undefined, url: string): boolean {
    return this.statusMatcher !== null && this.statusMatcher(host, url)
  }

  /** @internal True when a route's path (whatever its host) or the status page would take `url`. */
  claims (url: string): boolean {
    return (this.options.status !== null && isStatusPath(this.options.status, url)) || this.routes.claims(url)
  }

  /** @internal What `matchedPrefix(gateway, host, path)` (mount.ts, the public helper) answers. */
  matchedPrefix (host: string | undefined, path: string): string | undefined {
    if (this.isStatusRequest(host, path)) return this.options.status!.path
    return this.routes.match(host, path)?.path
  }

  /**
   * Node `'request'` handler: forwards a routed request to its pool and
   * streams the answer back. Calls `next()` (or answers 404 without one) when
   * no route matches. `onFailure`, when given, takes every failure that would
   * otherwise be answered with a 4xx/5xx (Express's `next(err)`). The whole
   * path is in proxy-request.ts. node:http2's compat request and response
   * (an HTTP/2 server's `'request'` event) are taken too.
   */
  handleRequest (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse,
    next?: (err?: unknown) => void, onFailure?: FailureHandler): void {
    if (req.httpVersionMajor === 2) adoptHttp2Request(req as IncomingMessage, res as Http2ServerResponse)
    // From here the compat objects are read through the parts of IncomingMessage and ServerResponse they share.
    proxyRequest(this, req as IncomingMessage, res as ServerResponse, next, onFailure)
  }

  /**
   * Node `'upgrade'` handler. Returns false, leaving the socket alone, when no
   * route matches; otherwise takes the socket and always answers it: a
   * validated tunnel, the upstream's own refusal, or an error status. The
   * whole path is in proxy-upgrade.ts.
   */
  handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    return proxyUpgrade(this, req, socket, head)
  }

  /**
   * Answer a failure that happened before the upstream's answer began: hand
   * it to `onFailure` (Express's `next(err)`) or the `onError` hook when there
   * is one, and send the usual 4xx/5xx when neither answered. A client that
   * left is only cut loose; an answer already under way is cut. @internal
   */
  answerFailure (req: IncomingMessage, target: ServerResponse | Duplex, err: SockgateError, onFailure?: FailureHandler): void {
    const http = isResponse(target)
    if (err instanceof ClientAbortedError || (http && target.headersSent)) {
      target.destroy()
      return
    }
    if (onFailure !== undefined && http) {
      onFailure(err)
      return
    }
    const answerUsual = (): void => {
      if (http) {
        if (!target.headersSent && !target.writableEnded) sendError(target, err)
      } else if (!target.destroyed && !target.writableEnded) {
        writeSocketError(target, err)
      }
    }
    const onError = this.options.onError
    if (onError === null) return answerUsual()
    const hookFailed = (cause: unknown): void => {
      this.report(new HookError('onError', cause), http ? 'http' : 'upgrade', req, undefined)
      answerUsual()
    }
    let result: void | Promise<void>
    try {
      result = onError(err, req, target)
    } catch (cause) {
      return hookFailed(cause)
    }
    if (result instanceof Promise) result.then(answerUsual, hookFailed)
    else answerUsual()
  }

  /**
   * Run the `authorize` hook. True (at once, when there is no hook: no
   * promise and no microtask turn per request) or resolves with true when
   * the request may go on; otherwise the hook's answer (or, when it failed,
   * a 500) has been given through `answer`/`fail`, and the caller stops.
   * @internal
   */
  authorized (req: IncomingMessage, route: NormalizedRoute, kind: 'http' | 'upgrade', peer: Peer | undefined,
    answer: (a: Answer) => void, fail: (err: SockgateError) => void): true | Promise<boolean> {
    const authorize = this.options.authorize
    if (authorize === null) return true
    return this.runAuthorize(authorize, req, route, kind, peer, answer, fail)
  }

  /**
   * Take one of `limits.perClient`'s slots for this request or upgrade,
   * given back when `target` (the response, or the upgrade's socket) closes,
   * however the work ends. True at once when there are no per-client
   * limits. Otherwise false when the client is past a limit: it has been
   * answered 429 with Retry-After, and the refusal reported, once per client
   * in the quiet window so a flood does not flood the log. @internal
   */
  admitClient (req: IncomingMessage, target: ServerResponse | Duplex, kind: 'http' | 'upgrade', peer: Peer, route: NormalizedRoute,
    onFailure?: FailureHandler): boolean {
    const limits = this.clientLimits
    if (limits === null) return true
    const admitted = limits.admit(kind, peer.clientAddress, Date.now())
    if (admitted instanceof ClientState) {
      target.once('close', () => limits.release(admitted, Date.now()))
      return true
    }
    if (admitted.report) this.report(admitted.error, kind, req, peer, route.upstream, undefined, route)
    this.answerFailure(req, target, admitted.error, onFailure)
    return false
  }

  private async runAuthorize (authorize: NonNullable<NormalizedOptions['authorize']>, req: IncomingMessage, route: NormalizedRoute,
    kind: 'http' | 'upgrade', peer: Peer | undefined, answer: (a: Answer) => void, fail: (err: SockgateError) => void): Promise<boolean> {
    let verdict: Answer | null
    try {
      verdict = verdictAnswer(await authorize(req))
    } catch (cause) {
      const error = new HookError('authorize', cause)
      this.report(error, kind, req, peer, route.upstream, undefined, route)
      fail(error)
      return false
    }
    if (verdict === null) return true
    answer(verdict)
    return false
  }

  /**
   * Handle upgrades on `server` (its `'upgrade'` event) until it closes.
   * Idempotent. Upgrades no route matches are left to the server's other
   * `'upgrade'` listeners, or answered 404 when there are none. CONNECT is
   * answered too ({@link answerConnect}).
   */
  attach (target: Server | Http2SecureServer): this {
    // An HTTP/2 server with `allowHTTP1` emits its HTTP/1.1 clients' upgrades (and CONNECTs) as node:http does.
    const server = target as Server
    if (this.detachers.has(server)) return this
    this.detachers.set(server, registerUpgradeHandler(server, '/', this.handleUpgrade))
    // The server's dispatcher goes when it closes, and with it this handler: a server listening anew is attached anew.
    server.once('close', () => this.detachers.delete(server))
    this.answerConnect(server)
    return this
  }

  /**
   * Take WebSockets over HTTP/2 (RFC 8441) on `server`, a `node:http2`
   * server created with `settings: { enableConnectProtocol: true }` (throws
   * `SOCKGATE_ERR_CONNECT_PROTOCOL` otherwise: sockgate never offers them by
   * itself): its extended CONNECT streams that a route matches are routed,
   * checked and tunnelled like upgrades, over HTTP/1.1 to the upstream.
   * Idempotent; lets go of the server when it closes. Its plain requests
   * stay the app's `'request'` handler's, which calls `handleRequest()`;
   * with `allowHTTP1`, `attach(server)` takes the HTTP/1.1 clients' upgrades.
   */
  attachHttp2 (server: AnyHttp2Server): this {
    if (this.http2Detachers.has(server)) return this
    this.http2Detachers.set(server, takeWebSocketStreams(this, server))
    server.once('close', () => {
      this.http2Detachers.get(server)?.()
      this.http2Detachers.delete(server)
    })
    return this
  }

  /**
   * Answer CONNECT on `server` with 400, unless the server has a `'connect'`
   * listener of its own: Node never passes CONNECT to the request handler,
   * and destroys the socket without a word when nobody listens. Adapters that
   * dispatch upgrades themselves call this; once per server, whatever the
   * number of gateways.
   */
  answerConnect (server: Server): void {
    refuseConnect(server, (error, req) => this.report(error, 'http', req, undefined))
  }

  /** A plain-data snapshot of every pool and server and the open tunnels. */
  status (): GatewayStatus {
    this.settleTunnelBytes()
    const now = Date.now()
    const pools: GatewayStatus['pools'] = {}
    for (const [name, pool] of this.pools) pools[name] = { servers: pool.servers.map((s) => s.snapshot(now)) }
    const status: GatewayStatus = { pools, tunnels: { open: this.tunnels.size } }
    if (this.clientLimits !== null) status.perClient = this.clientLimits.snapshot()
    return status
  }

  /**
   * The gateway's metrics in the Prometheus text exposition format (the
   * `sockgate_*` families of docs/health.md), for a `/metrics` route of your
   * own or to append to prom-client's `register.metrics()`.
   */
  metrics (): string {
    this.settleTunnelBytes()
    return renderPrometheus(this.pools.values(), this.tunnels.size) + (this.clientLimits?.metrics() ?? '')
  }

  private settleTunnelBytes (): void {
    for (const t of this.tunnels) t.settle()
  }

  /**
   * Stop taking new work (503), let open tunnels run for up to `drain` ms,
   * then end them (spread over `spread` ms when given) and release every
   * connection, listener and timer.
   * Node's `server.close()` does not touch upgraded sockets, so this does.
   */
  close (options: CloseOptions = {}): Promise<void> {
    const spread = options.spread ?? 0
    // Checked before anything changes, as pool.drain() checks its timeout: a refused close leaves the gateway open.
    if (!Number.isInteger(spread) || spread < 0 || spread > MAX_TIMER_MS) {
      throw new RangeError(`close() spread must be an integer from 0 to ${MAX_TIMER_MS} (ms), got ${String(spread)}`)
    }
    this.closing ??= this.shutdown(options.drain ?? 0, spread)
    return this.closing
  }

  private async shutdown (drain: number, spread: number): Promise<void> {
    this.health.stop()
    this.clientLimits?.stop()
    // The upgrade handlers stay registered (they hold no socket or timer): with them gone, the dispatcher
    // would answer this gateway's routes 404 instead of the 503 a closed gateway owes (DESIGN: "After close()").
    if (drain > 0) await this.tunnelsClosed(drain)
    const reason = drain > 0 ? 'drained' : 'gateway-closed'
    if (spread > 0) await endSpread([...this.tunnels], reason, spread)
    for (const t of this.tunnels) t.destroy(reason)
    await this.tunnelsClosed(0)
    await Promise.all([...this.pools.values()].map((p) => p.closeConnections()))
  }

  /** Resolves when every tunnel has closed, or after `ms` (when `ms` > 0) whichever comes first. */
  private tunnelsClosed (ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined
      const check = (): void => {
        if (this.tunnels.size > 0) return
        finish()
      }
      const finish = (): void => {
        clearTimeout(timer)
        this.off('tunnel:close', check)
        resolve()
      }
      if (ms > 0) timer = setTimeout(finish, ms)
      this.on('tunnel:close', check)
      check()
    })
  }
}

/**
 * Build a gateway from options (validated once; throws
 * `SOCKGATE_ERR_INVALID_OPTION` naming the option path on a mistake).
 */
export function createGateway (options: GatewayOptions): Gateway {
  return new Gateway(normalizeOptions(options))
}
