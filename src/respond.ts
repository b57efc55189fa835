import { STATUS_CODES, validateHeaderName, validateHeaderValue, type ServerResponse } from 'node:http'
import type { OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2'
import type { Duplex } from 'node:stream'
import { RateLimitedError, type SockgateError } from './errors.js'
import { isHopByHop, serializeHead } from './http-syntax.js'

/** Seconds a client is asked to wait before retrying a 503. */
export const RETRY_AFTER_SECONDS = 5

/**
 * What the client reads in the body: the reason for its own mistakes (4xx),
 * only the status text for ours (5xx), so upstream addresses never leak.
 */
function clientText (err: SockgateError): string {
  const status = err.statusCode
  return status >= 400 && status < 500 ? err.message : `${status} ${STATUS_CODES[status] ?? 'Error'}`
}

function extraHeaders (err: SockgateError): Array<[string, string]> {
  if (err.statusCode === 503) return [['Retry-After', String(RETRY_AFTER_SECONDS)]]
  if (err instanceof RateLimitedError) return [['Retry-After', String(err.retryAfter)]]
  if (err.code === 'SOCKGATE_ERR_UPGRADE_VERSION') return [['Sec-WebSocket-Version', '13']]
  return []
}

/** A complete answer to send: a sockgate error, or what an `authorize` hook decided. */
export interface Answer {
  status: number
  headers: Record<string, string>
  body: string | Buffer
}

/** The answer a client gets for `err`: its status, a plain-text body, and Retry-After or Sec-WebSocket-Version where they apply. */
export function errorAnswer (err: SockgateError): Answer {
  const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8' }
  for (const [name, value] of extraHeaders(err)) headers[name.toLowerCase()] = value
  return { status: err.statusCode, headers, body: clientText(err) + '\n' }
}

/**
 * What an `authorize` verdict means: null lets the request through; `false`
 * is 403, a status is that status, `{ status, headers?, body? }` that answer
 * (the body defaults to the status text). Throws on anything else, and on
 * header names or values that could not be sent (CR, LF...), so the hook's
 * mistake is a 500 and never a split header.
 */
export function verdictAnswer (verdict: unknown): Answer | null {
  if (verdict === true) return null
  const spec = verdict === false ? { status: 403 } : typeof verdict === 'number' ? { status: verdict } : verdict
  if (typeof spec !== 'object' || spec === null) throw new TypeError(`authorize returned ${String(verdict)}; expected true, false, a status or { status, headers?, body? }`)
  const { status, headers = {}, body } = spec as { status?: unknown, headers?: unknown, body?: unknown }
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599) {
    throw new TypeError(`authorize answered status ${String(status)}; expected a whole number from 200 to 599`)
  }
  if (typeof headers !== 'object' || headers === null) throw new TypeError('authorize answered headers that are not an object')
  const checked: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    validateHeaderName(name)
    validateHeaderValue(name, value)
    checked[name.toLowerCase()] = String(value)
  }
  if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) throw new TypeError('authorize answered a body that is not a string or Buffer')
  if (body === undefined) checked['content-type'] ??= 'text/plain; charset=utf-8'
  return { status, headers: checked, body: body ?? `${status} ${STATUS_CODES[status] ?? ''}\n` }
}

/**
 * Answer a raw socket (an upgrade has no response object) with a short
 * HTTP/1.1 response and `Connection: close`, then close it once the bytes are
 * flushed, as ws does when it aborts a handshake. An HTTP/2 stream (a
 * WebSocket over HTTP/2) is answered with a HEADERS frame instead, and a
 * response object (node:http2's compat `'connect'` event, which hands one
 * where HTTP/1.1 hands a socket) through {@link sendAnswer}.
 */
export function writeSocketAnswer (socket: Duplex, answer: Answer): void {
  if (isResponse(socket)) return sendAnswer(socket, answer, true)
  if (socket.destroyed) return
  socket.on('error', noop)
  if (isHttp2Stream(socket)) return answerStream(socket, answer)
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const body = typeof answer.body === 'string' ? Buffer.from(answer.body) : answer.body
  const fields = ['Connection', 'close']
  for (const [name, value] of Object.entries(answer.headers)) {
    if (name !== 'content-length' && name !== 'connection') fields.push(name, value)
  }
  fields.push('content-length', String(body.length))
  const head = serializeHead(`HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? 'Error'}`, fields)
  socket.once('finish', () => socket.destroy())
  socket.end(Buffer.concat([Buffer.from(head, 'latin1'), body]))
}

/**
 * Answer an HTTP/2 stream: `:status` and the answer's fields (less the
 * connection-specific ones, which HTTP/2 forbids: RFC 9113 §8.2.2), the body,
 * then the stream goes. A stream already answered is cut (RST_STREAM).
 */
function answerStream (stream: ServerHttp2Stream, answer: Answer): void {
  if (stream.headersSent) {
    stream.destroy()
    return
  }
  const body = typeof answer.body === 'string' ? Buffer.from(answer.body) : answer.body
  const headers: OutgoingHttpHeaders = { ':status': answer.status }
  for (const [name, value] of Object.entries(answer.headers)) if (!isHopByHop(name)) headers[name] = value
  headers['content-length'] = body.length
  respondToStream(stream, headers, { ':status': answer.status, 'content-length': body.length })
  stream.once('finish', () => stream.destroy())
  stream.end(body)
}

/**
 * Send `headers` on `stream`, or `fallback` when node:http2 refuses them: a
 * head HTTP/1.1 allows and HTTP/2 does not (a single-value field given
 * twice) still gets the answer's essentials rather than none.
 */
export function respondToStream (stream: ServerHttp2Stream, headers: OutgoingHttpHeaders, fallback: OutgoingHttpHeaders): void {
  try {
    stream.respond(headers)
  } catch {
    stream.respond(fallback)
  }
}

/** An HTTP/2 server stream: it is answered with `respond()`, not with bytes. */
function isHttp2Stream (socket: Duplex): socket is ServerHttp2Stream {
  return typeof (socket as Partial<ServerHttp2Stream>).respond === 'function'
}

/**
 * A response object rather than a socket: node:http's `ServerResponse` or
 * node:http2's compat `Http2ServerResponse`, which is no subclass of it.
 */
export function isResponse (target: object): target is ServerResponse {
  return typeof (target as Partial<ServerResponse>).writeHead === 'function'
}

/** {@link writeSocketAnswer} with the answer for `err`. */
export function writeSocketError (socket: Duplex, err: SockgateError): void {
  writeSocketAnswer(socket, errorAnswer(err))
}

/**
 * Answer an HTTP request; if the answer had already begun, cut the
 * connection instead. `close` adds `Connection: close` (set it when the
 * request body was not read, or it would be parsed as the next request).
 */
export function sendAnswer (res: ServerResponse, answer: Answer, close: boolean): void {
  if (res.headersSent || res.destroyed) {
    res.destroy()
    return
  }
  const headers: Record<string, string> = { ...answer.headers, 'content-length': String(Buffer.byteLength(answer.body)) }
  // HTTP/2 has no Connection field (RFC 9113 §8.2.2): the answer ends its stream, not the connection.
  if ((close || !res.req.complete) && res.req.httpVersionMajor !== 2) headers.connection = 'close'
  res.writeHead(answer.status, headers)
  res.end(answer.body)
}

/** {@link sendAnswer} with the answer for `err`. */
export function sendError (res: ServerResponse, err: SockgateError): void {
  // A client whose upgrade failed expected this connection to switch protocols, so it is not kept for more requests.
  sendAnswer(res, errorAnswer(err), err.statusCode === 413 || err.code === 'SOCKGATE_ERR_BAD_UPGRADE')
}

function noop (): void {}
