/**
 * WebSocket over HTTP/2 (RFC 8441) on a `node:http2` server, and what the
 * core needs to read node:http2's compat requests as it reads HTTP/1.1 ones.
 *
 * A browser that was sent SETTINGS_ENABLE_CONNECT_PROTOCOL opens its
 * WebSocket as a stream of the page's own connection: an extended CONNECT
 * (`:method CONNECT`, `:protocol websocket`, `:path`, `:authority`), with no
 * Sec-WebSocket-Key. `gateway.attachHttp2()` takes those streams before the
 * app's handlers see them and sends each through the upgrade path
 * (proxy-upgrade.ts) with the HTTP/2 client side below: the upstream gets
 * the usual HTTP/1.1 upgrade, with a key made here, its 101 is checked as
 * for any client, the browser gets `:status 200`, and the tunnel pumps the
 * stream's DATA frames to the upstream socket and back.
 */
import { randomBytes } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import {
  Http2ServerRequest, type Http2SecureServer, type Http2Server, type Http2ServerResponse, type IncomingHttpHeaders, type OutgoingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2'
import { ConnectProtocolError, NoRouteError } from './errors.js'
import type { Gateway } from './gateway.js'
import { filterRawResponseHeaders } from './headers.js'
import { checkProtocol, proxyUpgrade, type UpgradeClientSide } from './proxy-upgrade.js'
import { respondToStream, writeSocketError } from './respond.js'

/** A `node:http2` server: `http2.createSecureServer()` (what browsers use) or `http2.createServer()`. */
export type AnyHttp2Server = Http2SecureServer | Http2Server

/** An extended CONNECT carries no body before the tunnel opens: what the upgrade path gets as `head`. */
const NO_HEAD = Buffer.alloc(0)

/**
 * The fields of an upstream's head as an HTTP/2 answer carries them:
 * `:status`, lower-case names, repeated fields as lists; without the
 * connection-specific fields, which HTTP/2 forbids (RFC 9113 §8.2.2), and
 * without Sec-WebSocket-Accept, which RFC 8441 §5 does not use.
 */
function http2Fields (status: number, rawHeaders: readonly string[], setCookie?: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':status': status }
  const fields = filterRawResponseHeaders(rawHeaders)
  if (setCookie !== undefined) fields.push('set-cookie', setCookie)
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = (fields[i] as string).toLowerCase()
    if (name === 'sec-websocket-accept') continue
    const value = fields[i + 1] as string
    const had = out[name]
    out[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [String(had), value]
  }
  return out
}

/** An extended CONNECT: its `:protocol` (RFC 8441 §4) is the Upgrade token, and it is answered on its stream. */
const HTTP2_CLIENT: UpgradeClientSide = {
  http2: true,
  validate (req, allowed) {
    const checked = checkProtocol(req, String(req.headers[':protocol']).toLowerCase(), allowed)
    // RFC 8441 §5: the client sends no key. The upstream gets one made here, and its Sec-WebSocket-Accept is checked
    // against it as for an HTTP/1.1 client.
    if (checked === 'websocket') req.headers['sec-websocket-key'] = randomBytes(16).toString('base64')
    return checked
  },
  accept (client, response, setCookie) {
    // What the client negotiated is all it must have: the rest of the 101 goes along when HTTP/2 can carry it.
    const negotiated: OutgoingHttpHeaders = { ':status': 200 }
    for (const name of ['sec-websocket-protocol', 'sec-websocket-extensions']) {
      if (response.headers[name] !== undefined) negotiated[name] = response.headers[name]
    }
    respondToStream(client as ServerHttp2Stream, http2Fields(200, response.rawHeaders, setCookie), negotiated)
  },
  refuse (client, response) {
    const status = response.statusCode ?? 502
    respondToStream(client as ServerHttp2Stream, http2Fields(status, response.rawHeaders), { ':status': status })
  },
}

/**
 * Make a compat request (node:http2's `Http2ServerRequest`) read as the core
 * reads an HTTP/1.1 one: Host from `:authority`, as an HTTP/1.1 hop must be
 * given it (RFC 9113 §8.3.1); and `res`, when given, tells whether its
 * stream is gone, as `ServerResponse.destroyed` does. Only HTTP/2 requests
 * come here.
 */
export function adoptHttp2Request (req: IncomingMessage, res?: Http2ServerResponse): void {
  const authority = req.headers[':authority']
  if (req.headers.host === undefined && typeof authority === 'string') req.headers.host = authority
  if (res !== undefined && !('destroyed' in res)) Object.defineProperty(res, 'destroyed', STREAM_DESTROYED)
}

const STREAM_DESTROYED: PropertyDescriptor = {
  get (this: Http2ServerResponse) { return this.stream.destroyed },
  configurable: true,
}

/**
 * Throw unless `server` sends SETTINGS_ENABLE_CONNECT_PROTOCOL. node:http2
 * keeps the settings it sends each new session (those it was created with,
 * as `updateSettings()` changed them) under a private symbol; a Node that
 * has moved them is not checked rather than refused.
 */
function checkConnectProtocol (server: AnyHttp2Server): void {
  const key = Object.getOwnPropertySymbols(server).find((s) => s.description === 'options')
  if (key === undefined) return
  const options = (server as unknown as Record<symbol, { settings?: { enableConnectProtocol?: boolean } } | undefined>)[key]
  if (options?.settings?.enableConnectProtocol !== true) throw new ConnectProtocolError()
}

/**
 * Take the extended CONNECT streams of `server` that a route of `gateway`
 * matches, until the returned function is called. Node's compat layer
 * answers every CONNECT itself (405, or its `'connect'` event), so the
 * streams are taken where the server emits them, as the upgrade dispatcher
 * takes upgrades (src/dispatch.ts): every other stream, and every other
 * event, passes straight on. A stream no route matches is left to the
 * server's `'stream'` listeners, or answered 404 when there are none.
 */
export function takeWebSocketStreams (gateway: Gateway, server: AnyHttp2Server): () => void {
  checkConnectProtocol(server)
  const ownEmit = Object.getOwnPropertyDescriptor(server, 'emit')
  const emit = server.emit
  let taking = true
  const ours = server.emit = function (this: AnyHttp2Server, event: string | symbol) {
    // `arguments` rather than a rest parameter: every other event passes through without an allocation.
    if (taking && event === 'stream' && takeStream(gateway, server, arguments[1], arguments[2], arguments[4])) return true
    return emit.apply(this, arguments as unknown as Parameters<AnyHttp2Server['emit']>)
  } as AnyHttp2Server['emit']
  return () => {
    taking = false
    // Whoever wrapped `emit` after us keeps their wrapper; ours then only passes events on.
    if (server.emit !== ours) return
    if (ownEmit === undefined) delete (server as Partial<AnyHttp2Server>).emit
    else Object.defineProperty(server, 'emit', ownEmit)
  }
}

function takeStream (gateway: Gateway, server: AnyHttp2Server, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]): boolean {
  // Only an extended CONNECT (RFC 8441 §4) can be a WebSocket.
  if (headers[':method'] !== 'CONNECT' || headers[':protocol'] === undefined) return false
  // A path no route could take is passed on before a request object is made: node:http2 ties one to each stream,
  // and the listeners of one made here would act on the compat layer's own.
  if (!gateway.claims(headers[':path'] ?? '')) return passOn(server, stream, headers)
  // Hooks (authorize, balance, onError) get the request object they get for the server's other requests.
  const req = new Http2ServerRequest(stream, headers, {}, rawHeaders) as unknown as IncomingMessage
  adoptHttp2Request(req)
  return proxyUpgrade(gateway, req, stream, NO_HEAD, HTTP2_CLIENT) || passOn(server, stream, headers)
}

/** An unrouted WebSocket stream: the server's own `'stream'` listeners have it, or it gets 404. */
function passOn (server: AnyHttp2Server, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): boolean {
  if (server.listenerCount('stream') > 0) return false
  writeSocketError(stream, new NoRouteError(headers[':authority'] ?? '', headers[':path'] ?? ''))
  return true
}
