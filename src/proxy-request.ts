/**
 * One plain HTTP request (or long-poll) through the gateway, top to bottom:
 * refuse what may not go on → route → authorize → body → pick (with
 * failover) → forward over the server's keep-alive connections → relay the
 * answer → account. {@link proxyRequest} is `gateway.handleRequest`.
 */
import { maxHeaderSize, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import {
  BadRequestError, BadUpgradeError, ClientAbortedError, ClientTimeoutError, GatewayClosedError, HookError, NoRouteError,
  SockgateError, StickyMissError, UpstreamConnectError, UpstreamProtocolError, UpstreamTimeoutError,
} from './errors.js'
import { readBody, reencodeBody, withBodyLength, type RequestBody } from './body.js'
import { withFailover } from './failover.js'
import type { FailureHandler, Gateway, Peer } from './gateway.js'
import { filterResponseHeaders, headersAsEdited, rewriteRequestHeaders } from './headers.js'
import { hostProblem } from './host.js'
import type { NormalizedRoute } from './options.js'
import { afterEarlierAnswers } from './pipelining.js'
import { listsToken } from './http-syntax.js'
import { sendAnswer } from './respond.js'
import { serveStatus } from './status.js'
import { isSecureClient } from './balance/stickiness.js'
import type { Pool } from './upstream/pool.js'
import type { UpstreamServer } from './upstream/server.js'

/**
 * Node `'request'` handler: forwards a routed request to its pool and
 * streams the answer back. Calls `next()` (or answers 404 without one) when
 * no route matches. `onFailure`, when given, takes every failure that would
 * otherwise be answered with a 4xx/5xx (Express's `next(err)`).
 */
export function proxyRequest (gateway: Gateway, req: IncomingMessage, res: ServerResponse,
  next?: (err?: unknown) => void, onFailure?: FailureHandler): void {
  const url = req.url ?? '/'
  const hostError = hostProblem(req)
  if (hostError !== undefined) {
    // A malformed Host never reaches an upstream, nor picks a route or the status page; what no route
    // would take stays the app's.
    if (gateway.claims(url) || next === undefined) refuse(gateway, req, res, onFailure, hostError)
    else next()
    return
  }
  // The status page comes before routing: it answers on every host unless status.host is set.
  if (gateway.isStatusRequest(req.headers.host, url)) {
    serveStatus(gateway, gateway.options.status!, req, res).catch((err: unknown) => res.destroy(err as Error))
    return
  }
  // Checked before routing: an authority-form (CONNECT) or absolute-form target has no path, so no
  // route could match it and it would fall through to next(); it is the client's mistake, so 400.
  if (req.method === 'CONNECT') return refuse(gateway, req, res, onFailure, new BadRequestError('CONNECT is not proxied'))
  if (url !== '*' && !url.startsWith('/')) return refuse(gateway, req, res, onFailure, BadRequestError.notAPath())
  const route = gateway.routes.match(req.headers.host, url)
  if (route === undefined || req.method === undefined) {
    if (next !== undefined) next()
    else refuse(gateway, req, res, onFailure, new NoRouteError(req.headers.host ?? '', url))
    return
  }
  if (gateway.closed) return refuse(gateway, req, res, onFailure, new GatewayClosedError(), route)
  // The upstream comes from the route table only: never from an absolute-form target or a `//host` path.
  if (url.startsWith('//')) return refuse(gateway, req, res, onFailure, BadRequestError.notAPath(), route)
  if (req.headers.upgrade !== undefined) return refuse(gateway, req, res, onFailure, upgradeAsRequest(req), route)
  // Pipelined requests go one at a time: this one starts once the answers before it are out.
  afterEarlierAnswers(req.socket, req, () => {
    new HttpExchange(gateway, req, res, route, onFailure).run().catch((err: unknown) => {
      // run() handles its own failures; this is a last guard so nothing escapes as an unhandled rejection.
      res.destroy(err as Error)
    })
  })
}

/** Answer a request that may not go on, and report why (to `proxy:error` and the log). */
function refuse (gateway: Gateway, req: IncomingMessage, res: ServerResponse, onFailure: FailureHandler | undefined,
  err: SockgateError, route?: NormalizedRoute): void {
  gateway.report(err, 'http', req, undefined, route?.upstream, undefined, route)
  gateway.answerFailure(req, res, err, onFailure)
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

/** One routed request: who sent it, where it goes, and the server that took it. */
class HttpExchange {
  private readonly pool: Pool
  private readonly peer: Peer
  /** The server of the current (finally, the last) attempt. */
  private server: UpstreamServer | undefined

  constructor (
    private readonly gateway: Gateway,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly route: NormalizedRoute,
    private readonly onFailure: FailureHandler | undefined
  ) {
    this.pool = gateway.pool(route.upstream)
    this.peer = gateway.peerOf(req)
  }

  async run (): Promise<void> {
    const { gateway, req, res, route, pool, peer } = this
    // Per-client limits come before authorize, as nginx's limit_req comes before its access checks.
    if (!gateway.admitClient(req, res, 'http', peer, route, this.onFailure)) return
    try {
      const check = gateway.authorized(req, route, 'http', peer,
        (a) => sendAnswer(res, a, false), (err) => gateway.answerFailure(req, res, err, this.onFailure))
      const passed = check === true || await check
      if (!passed || res.destroyed) return
      const limit = gateway.options.limits.body
      // A body parser mounted before sockgate has spent the stream: send what it parsed, encoded again.
      const parsed = req.readableDidRead
      const body = parsed ? reencodeBody(req, limit) : await readBody(req, limit)
      const edited = headersAsEdited(req.rawHeaders, req.headers)
      const raw = parsed && body !== null ? withBodyLength(edited, (body as Buffer).length) : edited
      const replayable = body === null || Buffer.isBuffer(body)
      const path = gateway.targetPath(route, req.url ?? '/')
      // A sid neither its name nor this gateway places is looked up in the shared store first (bounded wait).
      const fromStore = pool.sticky?.shared == null ? undefined : pool.sticky.fromStore(req)
      if (fromStore !== undefined) await fromStore
      const ctx = { req, clientAddress: peer.clientAddress, now: Date.now() }
      await withFailover(pool, ctx, () => replayable && !res.headersSent && !res.destroyed, async (server) => {
        this.server = server
        const headers = rewriteRequestHeaders(raw, gateway.headerContext(peer, null, server), gateway.options.headers)
        this.attemptStarted(server)
        try {
          await this.forward(server, path, headers, body)
        } catch (err) {
          this.attemptEnded(server)
          throw err
        }
        // The answer is this server's until the client has it all (or is gone).
        if (res.destroyed) this.attemptEnded(server)
        else res.once('close', () => this.attemptEnded(server))
      })
    } catch (err) {
      const error = err instanceof SockgateError ? err : new ClientAbortedError(err)
      this.report(error)
      this.server?.countResponse(error.statusCode)
      gateway.answerFailure(req, res, error, this.onFailure)
    }
  }

  private report (error: SockgateError): void {
    this.gateway.report(error, 'http', this.req, this.peer, this.pool.name, this.server, this.route)
  }

  // Accounting: what least-conn, maxConns, the status page and metrics read.

  private attemptStarted (server: UpstreamServer): void {
    server.activeRequests++
    server.requests++
  }

  private attemptEnded (server: UpstreamServer): void {
    server.activeRequests--
  }

  /**
   * Send the request to `server` and stream the answer into the client's
   * response. Resolves once the answer has begun (from then on it is this
   * server's), rejects with a SockgateError when it failed before that.
   *
   * While the client's buffer is full, undici is paused (its body timer
   * with it), so `timeouts.send` bounds the wait for 'drain': past it the
   * client is cut and the upstream request aborted.
   */
  private forward (server: UpstreamServer, path: string, headers: string[], body: RequestBody): Promise<void> {
    const { gateway, req, res, pool } = this
    const timeouts = gateway.options.timeouts
    const sticky = pool.sticky
    const setCookie = sticky?.setCookieFor(server, req, isSecureClient(req, this.peer.encrypted, this.peer.trusted))
    const onResponse = gateway.options.onResponse
    // The engine.io answer a sid is learnt from: the status and the first body chunk.
    let learn: ((status: number, chunk: Buffer) => void) | undefined
    if (sticky?.sessions != null) {
      learn = (status, chunk) => {
        const miss = sticky.learnFromResponse(req, server, status, chunk)
        if (miss !== undefined) this.report(new StickyMissError(server.url, miss.sid, miss.owner?.url))
      }
    }
    return new Promise((resolve, reject) => {
      let started = false
      // undici calls onRequestStart just before it writes the request on a connected socket (client-h1.js writeH1).
      let sent = false
      let status = 0
      let controller: Dispatcher.DispatchController | undefined
      let sendTimer: NodeJS.Timeout | undefined
      const onClientClose = (): void => {
        if (!res.writableFinished) controller?.abort(new ClientAbortedError())
      }
      const onDrain = (): void => {
        clearTimeout(sendTimer)
        sendTimer = undefined
        controller?.resume()
      }
      const waitForDrain = (c: Dispatcher.DispatchController): void => {
        c.pause()
        if (sendTimer !== undefined) return
        res.once('drain', onDrain)
        sendTimer = setTimeout(() => c.abort(new ClientTimeoutError(timeouts.send)), timeouts.send)
      }
      /** The exchange is over, one way or the other: stop watching the client. */
      const settle = (): void => {
        server.bytesIn += body === null ? 0 : Buffer.isBuffer(body) ? body.length : body.seen
        clearTimeout(sendTimer)
        res.removeListener('drain', onDrain)
        res.removeListener('close', onClientClose)
      }
      res.once('close', onClientClose)
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart (c) {
          controller = c
          sent = true
          if (res.destroyed) c.abort(new ClientAbortedError())
        },
        onResponseStart (c, statusCode, upstreamHeaders, statusMessage) {
          // 1xx (102, 103) are skipped: the final answer follows. undici itself refuses a 100 (see classify()).
          if (statusCode < 200) return
          const out = filterResponseHeaders(upstreamHeaders as Record<string, string | string[]>)
          // RFC 9110 §8.6: a server never sends Content-Length with a 204, whatever the upstream wrote.
          if (statusCode === 204) delete out['content-length']
          if (setCookie !== undefined) appendSetCookie(out, setCookie)
          if (onResponse !== null) {
            try {
              onResponse(req, res, out)
            } catch (cause) {
              // Nothing reached the client yet: the request fails as a whole, and this server is not blamed.
              const err = new HookError('onResponse', cause)
              reject(err)
              c.abort(err)
              return
            }
          }
          started = true
          server.countResponse(statusCode)
          resolve()
          status = statusCode
          // HTTP/2 has no reason phrase (RFC 9113 §8.3.2), and node:http2 warns when given one.
          if (req.httpVersionMajor === 2) res.writeHead(statusCode, out)
          else res.writeHead(statusCode, statusMessage ?? '', out)
        },
        onResponseData (c, chunk) {
          server.bytesOut += chunk.length
          if (learn !== undefined) {
            learn(status, chunk)
            learn = undefined
          }
          if (!res.write(chunk)) waitForDrain(c)
        },
        onResponseEnd () {
          settle()
          res.end()
        },
        onResponseError: (_c, err) => {
          settle()
          // A 204 or 304 ends at its head, whatever Content-Length says (RFC 9112 §6.3, RFC 9110 §8.6); undici 7
          // still compares the two (client-h1.js onMessageComplete) and fails the answer, which is complete.
          if (started && (status === 204 || status === 304) && (err as { code?: string }).code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
            res.end()
            return
          }
          const error = classify(err, server, sent, timeouts)
          if (started) {
            res.destroy()
            this.report(error)
          } else {
            reject(error)
          }
        },
      }
      pool.connectionsTo(server).dispatch({ method: req.method as Dispatcher.HttpMethod, path, headers, body }, handler)
    })
  }
}

/**
 * Map an undici failure to what the client and operator are told. A server
 * that answered, however badly, gets an `UpstreamProtocolError` (one 502, no
 * failover, no passive failure); only connect errors, resets and timeouts
 * are the server's failures. `sent`: the request had been written.
 */
function classify (err: Error & { code?: string }, server: UpstreamServer, sent: boolean, ms: { connect: number, request: number }): SockgateError {
  if (err instanceof SockgateError) return err
  const invalid = (reason: string, hint?: string): SockgateError => new UpstreamProtocolError(server.url, reason, err, hint)
  switch (err.code) {
    case 'UND_ERR_CONNECT_TIMEOUT': return new UpstreamTimeoutError(server.url, 'connect', ms.connect)
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT': return new UpstreamTimeoutError(server.url, 'request', ms.request)
    case 'UND_ERR_ABORTED': return new ClientAbortedError(err)
    // undici refused to build the request (a hook left a header or path that cannot be sent): the request's
    // fault, so no failover and no failure for the server. Nothing was written.
    case 'UND_ERR_INVALID_ARG': return BadRequestError.unsendable(err)
    case 'UND_ERR_HEADERS_OVERFLOW':
      return invalid(`its response headers are larger than the ${maxHeaderSize} bytes the gateway reads`,
        'make the app send smaller headers (does it echo the request into them?), or raise node --max-http-header-size')
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
      return invalid('its body is shorter or longer than its Content-Length', 'check the Content-Length the app sends, and whether it crashed mid-answer')
    case 'UND_ERR_SOCKET':
      // undici 7 names no code for these: it destroys the socket with a bare message (client-h1.js onHeadersComplete).
      if (err.message === 'bad response') {
        return invalid('an unsolicited 100 Continue (the request had no Expect: 100-continue)',
          'make the app send 100 Continue only when a request asks for it (RFC 9110 §10.1.1)')
      }
      if (err.message === 'bad upgrade') return invalid('it switched protocols (101) on a plain request')
  }
  if (err.name === 'HTTPParserError' || err.code?.startsWith('HPE_') === true) return invalid('the answer is not valid HTTP')
  return new UpstreamConnectError(server.url, err, sent)
}

/** Adds `value` to the `set-cookie` field of undici's response headers, keeping the upstream's own cookies. */
function appendSetCookie (headers: Record<string, string | string[]>, value: string): void {
  const name = Object.keys(headers).find((k) => k.toLowerCase() === 'set-cookie') ?? 'set-cookie'
  const existing = headers[name]
  headers[name] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value]
}
