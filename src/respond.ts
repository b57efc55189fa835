import { STATUS_CODES, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { SockgateError } from './errors.js'

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
  if (err.code === 'SOCKGATE_ERR_UPGRADE_VERSION') return [['Sec-WebSocket-Version', '13']]
  return []
}

/**
 * Answer a raw socket (an upgrade has no response object) with a short
 * HTTP/1.1 response and `Connection: close`, then close it once the bytes are
 * flushed, as ws does when it aborts a handshake.
 */
export function writeSocketError (socket: Duplex, err: SockgateError): void {
  if (socket.destroyed) return
  socket.on('error', noop)
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const body = clientText(err) + '\n'
  let head = `HTTP/1.1 ${err.statusCode} ${STATUS_CODES[err.statusCode] ?? 'Error'}\r\n` +
    'Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n`
  for (const [name, value] of extraHeaders(err)) head += `${name}: ${value}\r\n`
  socket.once('finish', () => socket.destroy())
  socket.end(head + '\r\n' + body)
}

/** Answer an HTTP request with the error's status; if the answer had already begun, cut the connection instead. */
export function sendError (res: ServerResponse, err: SockgateError): void {
  if (res.headersSent || res.destroyed) {
    res.destroy()
    return
  }
  const body = clientText(err) + '\n'
  const headers: Record<string, string> = {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
  }
  for (const [name, value] of extraHeaders(err)) headers[name.toLowerCase()] = value
  // A request body we refused to read would otherwise be parsed as the next request; a client whose
  // upgrade failed expected this connection to switch protocols, so it is not kept for more requests.
  if (err.statusCode === 413 || err.code === 'SOCKGATE_ERR_BAD_UPGRADE' || !res.req.complete) headers.connection = 'close'
  res.writeHead(err.statusCode, headers)
  res.end(body)
}

function noop (): void {}
