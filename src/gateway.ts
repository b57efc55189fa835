import { EventEmitter } from 'node:events'
import { ServerResponse, type IncomingMessage, type Server } from 'node:http'
import type { TLSSocket } from 'node:tls'
import type { Duplex } from 'node:stream'
import {
  BadRequestError, BadUpgradeError, NoRouteError, ClientAbortedError, GatewayClosedError, HookError, SockgateError, StickyMissError,
} from './errors.js'
import { readBody, reencodeBody, withBodyLength } from './body.js'
import { withFailover } from './failover.js'
import { Forwarder, type ForwardRequest } from './forward.js'
import { headersAsEdited, rewriteRequestHeaders } from './headers.js'
import { GatewayLog, type UpstreamStateEvent } from './log.js'
import { normalizeOptions, type NormalizedOptions, type NormalizedRoute } from './options.js'
import { sendAnswer, sendError, verdictAnswer, writeSocketAnswer, writeSocketError, type Answer } from './respond.js'
import { compileRoutes, stripPathPrefix, type RouteTable } from './route.js'
import { resolveClientAddress, unmapAddress } from './trust.js'
import { Tunnel } from './tunnel.js'
import { refuseConnect, registerUpgradeHandler } from './dispatch.js'
import { HealthChecker } from './health.js'
import { hostProblem } from './host.js'
import { afterEarlierAnswers } from './pipelining.js'
import { renderPrometheus } from './metrics.js'
import { isStatusPath, isStatusRequest, serveStatus } from './status.js'
import { holdEarlyData, listsToken, relayRefusal, upstreamHandshake, validateUpgrade, type HandshakeCancel } from './upgrade.js'
import { Pool } from './upstream/pool.js'
import type { PickContext } from './balance/types.js'
import { addHeaderToHead, isSecureClient, type Stickiness } from './balance/stickiness.js'
import type { UpstreamServer } from './upstream/server.js'
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
interface Peer {
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
}

const METHODS_WITHOUT_TARGET = new Set(['CONNECT'])

/**
 * The framework-agnostic core: routes requests and upgrades to upstream
 * pools, forwards HTTP, tunnels WebSockets, and reports what happens as
 * events. Made by `createGateway()`.
 */
export class Gateway extends EventEmitter<GatewayEvents> {
  readonly options: NormalizedOptions
  private readonly routes: RouteTable
  private readonly pools = new Map<string, Pool>()
  private readonly forwarder: Forwarder
  private readonly tunnels = new Set<Tunnel>()
  private readonly detachers = new Map<Server, () => void>()
  private readonly health: HealthChecker
  private readonly log: GatewayLog | null
  private closing: Promise<void> | undefined

  constructor (options: NormalizedOptions) {
    super()
    this.options = options
    this.routes = compileRoutes(options.routes)
    this.forwarder = new Forwarder(options.timeouts)
    this.log = options.logger === null ? null : new GatewayLog(options.logger)
    // Passive health, operators and active checks all report state changes the same way.
    const announce = (pool: string, server: UpstreamServer, up: boolean, reason: string): void => {
      const event = { pool, server: server.url, name: server.name, reason }
      this.log?.upstream(up, event)
      this.emit(up ? 'upstream:up' : 'upstream:down', event)
    }
    for (const spec of options.upstreams) {
      this.pools.set(spec.name, new Pool(spec, (server, up, reason) => announce(spec.name, server, up, reason),
        (server) => this.forwarder.forget(server)))
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

  private peerOf (req: IncomingMessage): Peer {
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

  /** Tell `proxy:error` listeners and the log (unless the route has `log: false`) about a failure. */
  private report (error: SockgateError, kind: 'http' | 'upgrade', req: IncomingMessage, peer: Peer | undefined,
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

  private targetPath (route: NormalizedRoute, url: string): string {
    return route.stripPrefix ? stripPathPrefix(route.path, url) : url
  }

  /**
   * Node `'request'` handler: forwards a routed request to its pool and
   * streams the answer back. Calls `next()` (or answers 404 without one) when
   * no route matches. `onFailure`, when given, takes every failure that would
   * otherwise be answered with a 4xx/5xx (Express's `next(err)`).
   */
  handleRequest (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void, onFailure?: FailureHandler): void {
    const url = req.url ?? '/'
    const hostError = hostProblem(req)
    if (hostError !== undefined) {
      // A malformed Host never reaches an upstream, nor picks a route or the status page; what no route
      // would take stays the app's.
      if (this.claims(url)) return this.refuse(req, res, hostError, onFailure)
      if (next !== undefined) next()
      else this.refuse(req, res, hostError, onFailure)
      return
    }
    // The status page comes before routing: it answers on every host unless status.host is set.
    if (this.options.status !== null && isStatusRequest(this.options.status, req)) {
      serveStatus(this, this.options.status, req, res).catch((err: unknown) => res.destroy(err as Error))
      return
    }
    // Checked before routing: an authority-form (CONNECT) or absolute-form target has no path, so no
    // route could match it and it would fall through to next(); it is the client's mistake, so 400.
    if (METHODS_WITHOUT_TARGET.has(req.method ?? '')) return this.refuse(req, res, new BadRequestError('CONNECT is not proxied'), onFailure)
    if (url !== '*' && !url.startsWith('/')) return this.refuse(req, res, new BadRequestError('the request target must be a path'), onFailure)
    const route = this.routes.match(req.headers.host, url)
    if (route === undefined || req.method === undefined) {
      if (next !== undefined) next()
      else this.refuse(req, res, new NoRouteError(req.headers.host ?? '', url), onFailure)
      return
    }
    let refusal: SockgateError | undefined
    if (this.closing !== undefined) refusal = new GatewayClosedError()
    // The upstream comes from the route table only: never from an absolute-form target or a `//host` path.
    else if (url.startsWith('//')) refusal = new BadRequestError('the request target must be a path')
    else if (req.headers.upgrade !== undefined) refusal = upgradeAsRequest(req)
    if (refusal !== undefined) return this.refuse(req, res, refusal, onFailure, route)
    afterEarlierAnswers(req.socket, req, () => {
      this.forward(req, res, route, onFailure).catch((err: unknown) => {
        // forward() handles its own failures; this is a last guard so nothing escapes as an unhandled rejection.
        res.destroy(err as Error)
      })
    })
  }

  /** True when a route's path (whatever its host) or the status page would take `url`. */
  private claims (url: string): boolean {
    return (this.options.status !== null && isStatusPath(this.options.status, url)) || this.routes.claims(url)
  }

  private refuse (req: IncomingMessage, res: ServerResponse, err: SockgateError, onFailure?: FailureHandler, route?: NormalizedRoute): void {
    this.report(err, 'http', req, undefined, route?.upstream, undefined, route)
    this.answerFailure(req, res, err, onFailure)
  }

  /**
   * Answer a failure that happened before the upstream's answer began: hand
   * it to `onFailure` (Express's `next(err)`) or the `onError` hook when there
   * is one, and send the usual 4xx/5xx when neither answered. A client that
   * left is only cut loose; an answer already under way is cut.
   */
  private answerFailure (req: IncomingMessage, target: ServerResponse | Duplex, err: SockgateError, onFailure?: FailureHandler): void {
    const http = target instanceof ServerResponse
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
   * Run the `authorize` hook. Resolves with true when the request may go on;
   * otherwise the hook's answer (or, when it failed, a 500) has been given
   * through `answer`/`fail`, and the caller stops.
   */
  private async authorized (req: IncomingMessage, route: NormalizedRoute, kind: 'http' | 'upgrade', peer: Peer | undefined,
    answer: (a: Answer) => void, fail: (err: SockgateError) => void): Promise<boolean> {
    const authorize = this.options.authorize
    if (authorize === null) return true
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

  private async forward (req: IncomingMessage, res: ServerResponse, route: NormalizedRoute, onFailure?: FailureHandler): Promise<void> {
    const pool = this.pool(route.upstream)
    const peer = this.peerOf(req)
    let server: UpstreamServer | undefined
    try {
      const passed = await this.authorized(req, route, 'http', peer,
        (a) => sendAnswer(res, a, false), (err) => this.answerFailure(req, res, err, onFailure))
      if (!passed || res.destroyed) return
      // A body parser mounted before sockgate has spent the stream: send what it parsed, encoded again.
      const parsed = req.readableDidRead
      const body = parsed ? reencodeBody(req, this.options.limits.body) : await readBody(req, this.options.limits.body)
      const edited = headersAsEdited(req.rawHeaders, req.headers)
      const raw = parsed && body !== null ? withBodyLength(edited, (body as Buffer).length) : edited
      const replayable = body === null || Buffer.isBuffer(body)
      const ctx: PickContext = { req, clientAddress: peer.clientAddress, now: Date.now() }
      const path = this.targetPath(route, req.url ?? '/')
      await withFailover(pool, ctx, () => replayable && !res.headersSent && !res.destroyed, async (s) => {
        server = s
        const headers = rewriteRequestHeaders(raw, headerContext(peer, null, s), this.options.headers)
        s.activeRequests++
        s.requests++
        try {
          await this.forwarder.forward(s, pool.spec, res, {
            method: req.method ?? 'GET',
            path,
            headers,
            body,
            onLateError: (err) => this.report(err, 'http', req, peer, pool.name, s, route),
            onResponse: this.options.onResponse === null ? undefined : responseHook(this.options.onResponse, req, res),
            ...(pool.sticky === null ? {} : this.stickyHooks(pool.sticky, req, peer, s, route)),
          })
        } catch (err) {
          s.activeRequests--
          throw err
        }
        // The answer is this server's until the client has it all (or is gone).
        if (res.destroyed) s.activeRequests--
        else res.once('close', () => { s.activeRequests-- })
      })
    } catch (err) {
      const error = err instanceof SockgateError ? err : new ClientAbortedError(err)
      this.report(error, 'http', req, peer, pool.name, server, route)
      if (server !== undefined) server.countResponse(error.statusCode)
      this.answerFailure(req, res, error, onFailure)
    }
  }

  /** The sticky-session hooks of one forwarded request: the cookie to set and the engine.io answer to learn from. */
  private stickyHooks (sticky: Stickiness, req: IncomingMessage, peer: Peer, server: UpstreamServer,
    route: NormalizedRoute): Pick<ForwardRequest, 'setCookie' | 'onFirstChunk'> {
    const url = req.url ?? '/'
    return {
      setCookie: sticky.setCookieFor(server, req, isSecureClient(req, peer.encrypted, peer.trusted)),
      onFirstChunk: sticky.sessions === null
        ? undefined
        : (status, chunk) => {
            const miss = sticky.learnFromResponse(url, server, status, chunk)
            if (miss !== undefined) this.report(new StickyMissError(server.url, miss.sid, miss.owner?.url), 'http', req, peer, route.upstream, server, route)
          },
    }
  }

  /**
   * Node `'upgrade'` handler. Returns false, leaving the socket alone, when no
   * route matches; otherwise takes the socket and always answers it: a
   * validated tunnel, the upstream's own refusal, or an error status.
   */
  handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const url = req.url ?? '/'
    const hostError = hostProblem(req)
    const route = hostError === undefined ? this.routes.match(req.headers.host, url) : undefined
    // A malformed Host picks no route, but what a route's path would take is refused rather than passed on.
    if (route === undefined && (hostError === undefined || !this.claims(url))) return false
    socket.on('error', noop)
    const take = (): void => {
      const checked = hostError ?? this.checkUpgrade(req, url)
      if (typeof checked !== 'string') {
        this.report(checked, 'upgrade', req, undefined, route?.upstream, undefined, route)
        this.answerFailure(req, socket, checked)
        return
      }
      // A string means the Host was good, so a route was found.
      this.upgrade(req, socket, head, route!, checked).catch((err: unknown) => {
        socket.destroy(err as Error)
      })
    }
    // Pipelined behind a request whose answer is still on its way: whatever we answer must come after it.
    afterEarlierAnswers(socket, req, take)
    return true
  }

  /** The Upgrade token to forward, or why a routed upgrade may not go on. */
  private checkUpgrade (req: IncomingMessage, url: string): SockgateError | string {
    if (this.closing !== undefined) return new GatewayClosedError()
    if (!url.startsWith('/') || url.startsWith('//')) return new BadRequestError('the request target must be a path')
    return validateUpgrade(req, this.options.upgrades)
  }

  private async upgrade (req: IncomingMessage, socket: Duplex, head: Buffer, route: NormalizedRoute, token: string): Promise<void> {
    const pool = this.pool(route.upstream)
    const peer = this.peerOf(req)
    const cancel: HandshakeCancel = { cancelled: false, onCancel: undefined }
    const onGone = (): void => {
      cancel.cancelled = true
      cancel.onCancel?.()
    }
    socket.once('close', onGone)
    // Node's HTTP server sockets allow half-open, so a client that leaves mid-handshake may show up as 'end' only.
    socket.once('end', onGone)
    const early = holdEarlyData(socket, head)
    const settle = (): Buffer[] => {
      socket.removeListener('close', onGone)
      socket.removeListener('end', onGone)
      return early.release()
    }
    let server: UpstreamServer | undefined
    try {
      const passed = await this.authorized(req, route, 'upgrade', peer, (a) => {
        settle()
        writeSocketAnswer(socket, a)
      }, (err) => {
        settle()
        this.answerFailure(req, socket, err)
      })
      if (!passed) return
      if (cancel.cancelled) throw new ClientAbortedError()
      const ctx: PickContext = { req, clientAddress: peer.clientAddress, now: Date.now() }
      const path = this.targetPath(route, req.url ?? '/')
      const raw = headersAsEdited(req.rawHeaders, req.headers)
      const result = await withFailover(pool, ctx, () => !cancel.cancelled, async (s) => {
        server = s
        // A handshake in progress counts against maxConns, or a burst of upgrades could all pass the cap.
        s.activeRequests++
        try {
          return await upstreamHandshake(s, {
            path,
            headers: rewriteRequestHeaders(raw, headerContext(peer, token, s), this.options.headers),
            token,
            clientKey: req.headers['sec-websocket-key'],
            connectMs: this.options.timeouts.connect,
            handshakeMs: this.options.timeouts.handshake,
            tls: pool.spec.tls,
            cancel,
          })
        } finally {
          s.activeRequests--
        }
      })
      const held = settle()
      const s = server!
      s.countUpgrade(result.kind === 'refused' ? 'refused' : socket.destroyed ? 'aborted' : 'switched')
      if (result.kind === 'refused') {
        this.report(relayRefusal(socket, result.response, result.upstream, s, this.options.timeouts.request), 'upgrade', req, peer, pool.name, s, route)
        pool.sticky?.learnFromRefusal(req.url ?? '/', result.response, (miss) => {
          this.report(new StickyMissError(s.url, miss.sid, miss.owner?.url), 'upgrade', req, peer, pool.name, s, route)
        })
        return
      }
      if (socket.destroyed || this.closing !== undefined) {
        result.upstream.destroy()
        socket.destroy()
        this.report(socket.destroyed ? new ClientAbortedError() : new GatewayClosedError(), 'upgrade', req, peer, pool.name, s, route)
        return
      }
      const setCookie = pool.sticky?.setCookieFor(s, req, isSecureClient(req, peer.encrypted, peer.trusted))
      socket.write(setCookie === undefined ? result.head : addHeaderToHead(result.head, 'Set-Cookie', setCookie), 'latin1')
      if (result.early.length > 0) socket.write(result.early)
      for (const chunk of held) result.upstream.write(chunk)
      this.openTunnel(socket, result.upstream, s, route, req, peer)
      const sticky = pool.sticky
      if (sticky !== null && sticky.sessions !== null) {
        socket.once('close', () => sticky.tunnelClosed(req.url ?? '/', s))
      }
    } catch (err) {
      settle()
      const error = err instanceof SockgateError ? err : new ClientAbortedError(err)
      this.report(error, 'upgrade', req, peer, pool.name, server, route)
      if (server !== undefined) server.countUpgrade(error instanceof ClientAbortedError ? 'aborted' : 'failed')
      this.answerFailure(req, socket, error)
    }
  }

  private openTunnel (client: Duplex, upstream: import('node:net').Socket, server: UpstreamServer, route: NormalizedRoute, req: IncomingMessage, peer: Peer): void {
    const info: TunnelOpenEvent = { pool: route.upstream, server: server.url, name: server.name, path: req.url ?? '/', clientAddress: peer.clientAddress }
    const log = route.log ? this.log : null
    const tunnel = new Tunnel(client, upstream, server, info, this.options.timeouts.idle, (t, event) => {
      this.tunnels.delete(t)
      server.tunnelClosed(t)
      log?.tunnelClosed(event)
      this.emit('tunnel:close', event)
    })
    this.tunnels.add(tunnel)
    server.tunnelOpened(tunnel)
    log?.tunnelOpened(info)
    this.emit('tunnel:open', info)
  }

  /**
   * Handle upgrades on `server` (its `'upgrade'` event) until it closes.
   * Idempotent. Upgrades no route matches are left to the server's other
   * `'upgrade'` listeners, or answered 404 when there are none. CONNECT is
   * answered too ({@link answerConnect}).
   */
  attach (server: Server): this {
    if (this.detachers.has(server)) return this
    this.detachers.set(server, registerUpgradeHandler(server, '/', this.handleUpgrade))
    // The server's dispatcher goes when it closes, and with it this handler: a server listening anew is attached anew.
    server.once('close', () => this.detachers.delete(server))
    this.answerConnect(server)
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
    return { pools, tunnels: { open: this.tunnels.size } }
  }

  /**
   * The gateway's metrics in the Prometheus text exposition format (the
   * `sockgate_*` families of docs/health.md), for a `/metrics` route of your
   * own or to append to prom-client's `register.metrics()`.
   */
  metrics (): string {
    this.settleTunnelBytes()
    return renderPrometheus(this.pools.values(), this.tunnels.size)
  }

  private settleTunnelBytes (): void {
    for (const t of this.tunnels) t.settle()
  }

  /**
   * Stop taking new work (503), let open tunnels run for up to `drain` ms,
   * then end them and release every connection, listener and timer.
   * Node's `server.close()` does not touch upgraded sockets, so this does.
   */
  close (options: CloseOptions = {}): Promise<void> {
    this.closing ??= this.shutdown(options.drain ?? 0)
    return this.closing
  }

  private async shutdown (drain: number): Promise<void> {
    this.health.stop()
    // The upgrade handlers stay registered (they hold no socket or timer): with them gone, the dispatcher
    // would answer this gateway's routes 404 instead of the 503 a closed gateway owes (DESIGN: "After close()").
    if (drain > 0) await this.tunnelsClosed(drain)
    for (const t of this.tunnels) t.destroy(drain > 0 ? 'drained' : 'gateway-closed')
    await this.tunnelsClosed(0)
    await this.forwarder.close()
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

function headerContext (peer: Peer, upgrade: string | null, server: UpstreamServer): import('./headers.js').RewriteContext {
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

/** `onResponse` bound to one request; a throw fails the request with `SOCKGATE_ERR_HOOK` (500). */
function responseHook (hook: NonNullable<NormalizedOptions['onResponse']>, req: IncomingMessage, res: ServerResponse): ForwardRequest['onResponse'] {
  return (headers) => {
    try {
      hook(req, res, headers)
    } catch (cause) {
      throw new HookError('onResponse', cause)
    }
  }
}

/**
 * Node hands an upgrade to the request handler when the request lacks
 * `Connection: upgrade`, or when the server has no 'upgrade' listener at all;
 * say which, since the fixes differ.
 */
function upgradeAsRequest (req: IncomingMessage): BadUpgradeError {
  if (listsToken(req.headers.connection, 'upgrade')) {
    return new BadUpgradeError('this server has no upgrade handler; call gateway.attach(server) (or the adapter\'s attach/listen) before it takes connections')
  }
  return new BadUpgradeError('the Connection header must list "upgrade" ' +
    '(a proxy in front dropped it: the old "Connection header value is not Upgrade" failure; with nginx: proxy_set_header Connection "upgrade")')
}

function noop (): void {}

/**
 * Build a gateway from options (validated once; throws
 * `SOCKGATE_ERR_INVALID_OPTION` naming the option path on a mistake).
 */
export function createGateway (options: GatewayOptions): Gateway {
  return new Gateway(normalizeOptions(options))
}
