/**
 * One upgrade (a WebSocket handshake) through the gateway, top to bottom:
 * validate → authorize → pick (with failover) → connect and send the
 * handshake → check the 101 → write it to the client → tunnel → account.
 * A refusal from the upstream is relayed instead. {@link proxyUpgrade} is
 * `gateway.handleUpgrade`.
 */
import { createHash } from 'node:crypto'
import http, { type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import {
  BadRequestError, BadUpgradeError, ClientAbortedError, GatewayClosedError, OriginRefusedError, SockgateError, StickyMissError,
  UpgradeRefusedError, UpgradeVersionError, UpstreamConnectError, UpstreamProtocolError, UpstreamTimeoutError,
} from './errors.js'
import { withFailover } from './failover.js'
import type { Gateway, Peer } from './gateway.js'
import { filterRawResponseHeaders, headersAsEdited, rewriteRequestHeaders } from './headers.js'
import { addHeaderToHead, listsToken, listTokens, serializeHead } from './http-syntax.js'
import { hostProblem } from './host.js'
import type { NormalizedRoute } from './options.js'
import { afterEarlierAnswers } from './pipelining.js'
import { writeSocketAnswer } from './respond.js'
import { Tunnel } from './tunnel.js'
import { isSecureClient } from './balance/stickiness.js'
import { connectUpstream } from './upstream/connect.js'
import type { Pool } from './upstream/pool.js'
import type { UpstreamServer } from './upstream/server.js'
import type { TunnelOpenEvent, UpstreamTlsOptions } from './types.js'

/**
 * Node `'upgrade'` handler. Returns false, leaving the socket alone, when no
 * route matches; otherwise takes the socket and always answers it: a
 * validated tunnel, the upstream's own refusal, or an error status.
 */
export function proxyUpgrade (gateway: Gateway, req: IncomingMessage, socket: Duplex, head: Buffer, side: UpgradeClientSide = HTTP1_CLIENT): boolean {
  const url = req.url ?? '/'
  const hostError = hostProblem(req)
  const route = hostError === undefined ? gateway.routes.match(req.headers.host, url) : undefined
  // A malformed Host picks no route, but what a route's path would take is refused rather than passed on.
  if (route === undefined && (hostError === undefined || !gateway.claims(url))) return false
  socket.on('error', noop)
  // Pipelined behind a request whose answer is still on its way: whatever we answer must come after it.
  afterEarlierAnswers(socket, req, () => {
    const checked = hostError ?? checkUpgrade(gateway, req, url, side)
    if (typeof checked !== 'string') {
      gateway.report(checked, 'upgrade', req, undefined, route?.upstream, undefined, route)
      gateway.answerFailure(req, socket, checked)
      return
    }
    // A string means the Host was good, so a route was found.
    new UpgradeExchange(gateway, req, socket, route!, checked, side).run(head).catch((err: unknown) => {
      socket.destroy(err as Error)
    })
  })
  return true
}

/** The Upgrade token to forward, or why a routed upgrade may not go on. */
function checkUpgrade (gateway: Gateway, req: IncomingMessage, url: string, side: UpgradeClientSide): SockgateError | string {
  if (gateway.closed) return new GatewayClosedError()
  if (!url.startsWith('/') || url.startsWith('//')) return BadRequestError.notAPath()
  const token = side.validate(req, gateway.options.upgrades)
  const originAllowed = gateway.options.originAllowed
  // A well-formed upgrade from a page that may not open sockets here (RFC 6455 §10.2).
  if (typeof token === 'string' && originAllowed !== null && !originAllowed(req.headers.origin)) return new OriginRefusedError(req.headers.origin)
  return token
}

/**
 * The client end of an upgrade: how its request is checked and how it is
 * told the upstream's answer. An HTTP/1.1 client's is its socket
 * ({@link HTTP1_CLIENT}); an HTTP/2 client's is a stream of its connection
 * (src/http2.ts). Failures and `authorize` answers go through
 * `writeSocketAnswer`, which knows both. One object per kind, shared by
 * every upgrade: the client (socket or stream) is passed in.
 */
export interface UpgradeClientSide {
  /** True for HTTP/2 (RFC 8441): `tunnel:open` says so. */
  readonly http2: boolean
  /** Check an upgrade before any upstream is contacted: the error to answer with, or the lower-cased protocol token to forward. */
  validate (req: IncomingMessage, allowed: ReadonlySet<string>): SockgateError | string
  /** The upstream switched protocols (`response` is its checked 101): tell the client, adding `setCookie` when given. */
  accept (client: Duplex, response: IncomingMessage, setCookie: string | undefined): void
  /** Send the head of the upstream's refusal `response`; its body follows on `client`, which then closes. */
  refuse (client: Duplex, response: IncomingMessage): void
}

/** An HTTP/1.1 upgrade: checked by {@link validateUpgrade}, answered with the upstream's own heads on the socket. */
export const HTTP1_CLIENT: UpgradeClientSide = {
  http2: false,
  validate: validateUpgrade,
  accept (client, response, setCookie) {
    const head = serializeHead(`HTTP/1.1 101 ${response.statusMessage || 'Switching Protocols'}`, response.rawHeaders)
    // Node's parser hands header bytes over as latin1 characters: written back the same way, bytes >= 0x80 stay themselves.
    client.write(setCookie === undefined ? head : addHeaderToHead(head, 'Set-Cookie', setCookie), 'latin1')
  },
  refuse (client, response) {
    const fields = [...filterRawResponseHeaders(response.rawHeaders), 'Connection', 'close']
    client.write(serializeHead(`HTTP/1.1 ${response.statusCode ?? 502} ${response.statusMessage ?? ''}`, fields), 'latin1')
  },
}

/** RFC 6455 §1.3: the GUID appended to the client's key to compute Sec-WebSocket-Accept. */
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
/** A base64-encoded 16-byte nonce is exactly 24 characters ending in `==`. */
const WS_KEY = /^[A-Za-z0-9+/]{22}==$/

/** Sec-WebSocket-Accept for a client key (RFC 6455 §4.2.2). */
function acceptKey (key: string): string {
  return createHash('sha1').update(key + WS_GUID).digest('base64')
}

/**
 * Check an upgrade before any upstream is contacted. Returns the error to
 * answer with, or the lower-cased Upgrade token to forward.
 */
export function validateUpgrade (req: IncomingMessage, allowed: ReadonlySet<string>): SockgateError | string {
  if (req.method !== 'GET') return new BadUpgradeError(`method must be GET, not ${req.method ?? ''}`)
  if (req.httpVersion !== '1.1') return new BadUpgradeError(`HTTP version must be 1.1, not ${req.httpVersion}`)
  if (!listsToken(req.headers.connection, 'upgrade')) {
    return new BadUpgradeError('the Connection header must list "upgrade" (a proxy in front dropped it; with nginx: proxy_set_header Connection "upgrade")')
  }
  const upgrade = req.headers.upgrade ?? ''
  const tokens = listTokens(upgrade)
  if (tokens.length !== 1) return new BadUpgradeError(`Upgrade must name exactly one protocol (got ${JSON.stringify(upgrade)})`)
  const token = tokens[0]!
  if (token === 'websocket') {
    const key = req.headers['sec-websocket-key']
    if (key === undefined || !WS_KEY.test(key) || Buffer.from(key, 'base64').length !== 16) {
      return new BadUpgradeError('Sec-WebSocket-Key must be a base64-encoded 16-byte nonce')
    }
  }
  return checkProtocol(req, token, allowed)
}

/**
 * What every upgrade, HTTP/1.1 or HTTP/2, is checked for once its protocol
 * `token` is known: that it is allowed, and a WebSocket's version. Returns
 * the error, or `token`.
 */
export function checkProtocol (req: IncomingMessage, token: string, allowed: ReadonlySet<string>): SockgateError | string {
  if (!allowed.has(token)) return new BadUpgradeError(`protocol ${JSON.stringify(token)} may not be tunnelled (allowed: ${[...allowed].join(', ')})`)
  if (token === 'websocket') {
    const version = req.headers['sec-websocket-version']
    if (version !== '13') return new UpgradeVersionError(version)
  }
  return token
}

/** One routed upgrade: who asked, where it goes, the server that took it, and how to stop when the client leaves. */
class UpgradeExchange {
  private readonly pool: Pool
  private readonly peer: Peer
  /** The server of the current (finally, the last) attempt. */
  private server: UpstreamServer | undefined
  /** Set when the client goes away during the handshake. */
  private readonly cancel: HandshakeCancel = { cancelled: false, onCancel: undefined }
  private early: EarlyData | undefined

  constructor (
    private readonly gateway: Gateway,
    private readonly req: IncomingMessage,
    private readonly socket: Duplex,
    private readonly route: NormalizedRoute,
    private readonly token: string,
    private readonly side: UpgradeClientSide
  ) {
    this.pool = gateway.pool(route.upstream)
    this.peer = gateway.peerOf(req)
  }

  private readonly onGone = (): void => {
    this.cancel.cancelled = true
    this.cancel.onCancel?.()
  }

  async run (head: Buffer): Promise<void> {
    const { gateway, req, socket, route, pool, peer, cancel } = this
    // Per-client limits come before authorize, as nginx's limit_req comes before its access checks.
    if (!gateway.admitClient(req, socket, 'upgrade', peer, route)) return
    socket.once('close', this.onGone)
    // Node's HTTP server sockets allow half-open, so a client that leaves mid-handshake may show up as 'end' only.
    socket.once('end', this.onGone)
    this.early = holdEarlyData(socket, head)
    try {
      const check = gateway.authorized(req, route, 'upgrade', peer, (a) => {
        this.settle()
        writeSocketAnswer(socket, a)
      }, (err) => {
        this.settle()
        gateway.answerFailure(req, socket, err)
      })
      if (check !== true && !await check) return
      // A sid neither its name nor this gateway places is looked up in the shared store first (bounded wait).
      const fromStore = pool.sticky?.shared == null ? undefined : pool.sticky.fromStore(req)
      if (fromStore !== undefined) await fromStore
      if (cancel.cancelled) throw new ClientAbortedError()
      const ctx = { req, clientAddress: peer.clientAddress, now: Date.now() }
      const path = gateway.targetPath(route, req.url ?? '/')
      const raw = headersAsEdited(req.rawHeaders, req.headers)
      const { timeouts } = gateway.options
      const result = await withFailover(pool, ctx, () => !cancel.cancelled, async (server) => {
        this.server = server
        // A handshake in progress counts against maxConns, or a burst of upgrades could all pass the cap.
        server.activeRequests++
        try {
          return await upstreamHandshake(server, {
            path,
            headers: rewriteRequestHeaders(raw, gateway.headerContext(peer, this.token, server), gateway.options.headers),
            token: this.token,
            clientKey: req.headers['sec-websocket-key'],
            connectMs: timeouts.connect,
            handshakeMs: timeouts.handshake,
            tls: pool.spec.tls,
            cancel,
          })
        } finally {
          server.activeRequests--
        }
      })
      const held = this.settle()
      const server = this.server!
      if (result.kind === 'refused') return this.relayRefusal(server, result)
      if (socket.destroyed || gateway.closed) {
        result.upstream.destroy()
        socket.destroy()
        server.countUpgrade(socket.destroyed ? 'aborted' : 'switched')
        this.report(socket.destroyed ? new ClientAbortedError() : new GatewayClosedError())
        return
      }
      const setCookie = pool.sticky?.setCookieFor(server, req, isSecureClient(req, peer.encrypted, peer.trusted))
      try {
        this.side.accept(socket, result.response, setCookie)
      } catch (err) {
        // node:http2 refusing even the negotiated fields of a 101: the upstream socket has no tunnel to go to.
        result.upstream.destroy()
        throw err
      }
      server.countUpgrade('switched')
      if (result.early.length > 0) socket.write(result.early)
      for (const chunk of held) result.upstream.write(chunk)
      this.openTunnel(server, result.upstream)
    } catch (err) {
      this.settle()
      const error = err instanceof SockgateError ? err : new ClientAbortedError(err)
      this.report(error)
      this.server?.countUpgrade(error instanceof ClientAbortedError ? 'aborted' : 'failed')
      gateway.answerFailure(req, socket, error)
    }
  }

  /** The handshake is over: stop watching for the client leaving, and take what it sent meanwhile. */
  private settle (): Buffer[] {
    this.socket.removeListener('close', this.onGone)
    this.socket.removeListener('end', this.onGone)
    return this.early?.release() ?? []
  }

  private report (error: SockgateError): void {
    this.gateway.report(error, 'upgrade', this.req, this.peer, this.pool.name, this.server, this.route)
  }

  private relayRefusal (server: UpstreamServer, result: Extract<HandshakeResult, { kind: 'refused' }>): void {
    server.countUpgrade('refused')
    this.report(relayRefusal(this.socket, this.side, result.response, result.upstream, server, this.gateway.options.timeouts.request))
    this.pool.sticky?.learnFromRefusal(this.req, result.response, (miss) => {
      this.report(new StickyMissError(server.url, miss.sid, miss.owner?.url))
    })
  }

  private openTunnel (server: UpstreamServer, upstream: Socket): void {
    const { gateway, route, req } = this
    const url = req.url ?? '/'
    const info: TunnelOpenEvent = { pool: route.upstream, server: server.url, name: server.name, path: url, clientAddress: this.peer.clientAddress }
    if (this.side.http2) info.http2 = true
    const log = route.log ? gateway.log : null
    const tunnel = new Tunnel(this.socket, upstream, server, info, gateway.options.timeouts.idle, (t, event) => {
      gateway.tunnels.delete(t)
      server.tunnelClosed(t)
      log?.tunnelClosed(event)
      gateway.emit('tunnel:close', event)
    }, gateway.options.timeouts.maxLifetime)
    gateway.tunnels.add(tunnel)
    server.tunnelOpened(tunnel)
    log?.tunnelOpened(info)
    gateway.emit('tunnel:open', info)
    // The session the tunnel carried is over when the client goes, whatever the upstream side still does.
    const sticky = this.pool.sticky
    if (sticky?.sessions != null) this.socket.once('close', () => sticky.tunnelClosed(req, server))
  }
}

function noop (): void {}

/**
 * Set when the client goes away during the handshake. A plain object rather
 * than an AbortController: this is made once per upgrade, and an
 * EventTarget costs more than the one callback it needs.
 */
interface HandshakeCancel {
  cancelled: boolean
  onCancel: (() => void) | undefined
}

/**
 * Most client bytes read and held while an upgrade waits for the upstream's
 * 101. Past this the client socket is paused and the kernel's buffer holds
 * the rest, so memory stays bounded whatever the client sends.
 */
const EARLY_DATA_LIMIT = 65_536

/** Client bytes that arrived before the tunnel opened, to be forwarded only after a valid 101. */
interface EarlyData {
  /** Stop reading and hand over everything held, in order (the upgrade's `head` first). */
  release (): Buffer[]
}

/**
 * Read what the client sends during the handshake instead of leaving it
 * unread: a client that closes or resets is then noticed at once (a paused
 * socket would only notice at the handshake timeout), and the bytes are
 * forwarded only once the upstream has said 101.
 */
function holdEarlyData (socket: Duplex, head: Buffer): EarlyData {
  const chunks: Buffer[] = head.length > 0 ? [head] : []
  let held = head.length
  let released = false
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk)
    held += chunk.length
    if (held > EARLY_DATA_LIMIT) socket.pause()
  }
  socket.on('data', onData)
  return {
    release () {
      if (released) return []
      released = true
      socket.removeListener('data', onData)
      socket.pause()
      return chunks
    },
  }
}

/** What a handshake attempt ended with. */
type HandshakeResult =
  /** `response`: the checked 101; `early`: the bytes that followed it. */
  | { kind: 'switched', upstream: Socket, response: IncomingMessage, early: Buffer }
  | { kind: 'refused', response: IncomingMessage, upstream: Socket }

interface HandshakeRequest {
  path: string
  headers: string[]
  token: string
  clientKey: string | undefined
  connectMs: number
  handshakeMs: number
  tls: UpstreamTlsOptions | null
  /** Marks the client gone; the attempt then stops early. */
  cancel: HandshakeCancel
}

/**
 * Send the upgrade request to one upstream server and wait for its answer.
 * Resolves with a validated 101 (socket, head to relay, bytes that followed
 * it) or a non-101 answer to relay; rejects with a SockgateError:
 * connect/timeout failures (which failover may retry) or a protocol error.
 * Whatever it rejects with, it leaves no upstream socket open.
 */
async function upstreamHandshake (server: UpstreamServer, hr: HandshakeRequest): Promise<HandshakeResult> {
  const socket = await connectUpstream(server, hr.connectMs, hr.tls)
  if (hr.cancel.cancelled) {
    socket.destroy()
    throw new ClientAbortedError()
  }
  let req: http.ClientRequest
  try {
    req = http.request({
      method: 'GET',
      path: hr.path,
      headers: hr.headers,
      setHost: false,
      createConnection: () => socket,
    })
  } catch (err) {
    // Node checks the head as it builds it, before a byte is written; no timer is armed yet, so nothing is left behind.
    socket.destroy()
    throw BadRequestError.unsendable(err)
  }
  // Everything `finish` touches (req, socket, timer) exists before any event or the timer can call it.
  return await new Promise<HandshakeResult>((resolve, reject) => {
    let settled = false
    const finish = (err: SockgateError | undefined, result?: HandshakeResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      hr.cancel.onCancel = undefined
      if (err !== undefined) {
        req.destroy()
        socket.destroy()
        reject(err)
      } else {
        resolve(result!)
      }
    }
    const onAbort = (): void => finish(new ClientAbortedError())
    const timer = setTimeout(() => finish(new UpstreamTimeoutError(server.url, 'handshake', hr.handshakeMs)), hr.handshakeMs)
    hr.cancel.onCancel = onAbort
    req.on('error', (err: NodeJS.ErrnoException) => {
      const protocol = typeof err.code === 'string' && err.code.startsWith('HPE_')
      finish(protocol ? new UpstreamProtocolError(server.url, 'the answer is not HTTP', err) : new UpstreamConnectError(server.url, err))
    })
    req.on('upgrade', (res: IncomingMessage, upstream: Socket, early: Buffer) => {
      const problem = check101(res, hr)
      if (problem !== undefined) {
        upstream.destroy()
        finish(new UpstreamProtocolError(server.url, problem))
        return
      }
      finish(undefined, { kind: 'switched', upstream, response: res, early })
    })
    req.on('response', (res: IncomingMessage) => {
      if (res.statusCode === 101) {
        // Node's parser only treats a 101 as a switch when it carries `Connection: upgrade` and `Upgrade`.
        finish(new UpstreamProtocolError(server.url, 'a 101 without Connection: upgrade and an Upgrade header'))
        return
      }
      finish(undefined, { kind: 'refused', response: res, upstream: socket })
    })
    req.end()
  })
}

/** Why a 101 may not open a tunnel, or undefined when it may. */
function check101 (res: IncomingMessage, hr: HandshakeRequest): string | undefined {
  if (res.statusCode !== 101) return `status ${res.statusCode} on an upgrade`
  const upgrade = (res.headers.upgrade ?? '').trim().toLowerCase()
  if (upgrade !== hr.token) return `a 101 with Upgrade ${JSON.stringify(res.headers.upgrade ?? '')} where ${hr.token} was asked for`
  if (hr.token === 'websocket' && res.headers['sec-websocket-accept'] !== acceptKey(hr.clientKey ?? '')) {
    return 'a 101 whose Sec-WebSocket-Accept does not match the client key'
  }
  return undefined
}

/**
 * Relay an upstream's non-101 answer to an upgrade as an ordinary response
 * (on HTTP/1.1 with `Connection: close`), then close both sides: the
 * upstream socket is never reused, since it was opened for an upgrade. The
 * body is streamed with backpressure; when it was chunked, Node has already
 * decoded it, so it is sent close-delimited.
 */
function relayRefusal (client: Duplex, side: UpgradeClientSide, res: IncomingMessage, upstream: Socket, server: UpstreamServer, idleMs: number): SockgateError {
  const closeBoth = (): void => {
    upstream.destroy()
    client.destroy()
  }
  client.on('error', closeBoth)
  client.on('close', () => upstream.destroy())
  res.on('error', closeBoth)
  upstream.setTimeout(idleMs, closeBoth)
  side.refuse(client, res)
  res.pipe(client)
  res.on('end', () => upstream.destroy())
  client.once('finish', () => client.destroy())
  return new UpgradeRefusedError(server.url, res.statusCode ?? 502)
}
