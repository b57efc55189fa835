import { maxHeaderSize, type ServerResponse } from 'node:http'
import { Pool as UndiciPool, type Dispatcher } from 'undici'
import {
  BadRequestError, ClientAbortedError, ClientTimeoutError, SockgateError, UpstreamConnectError, UpstreamProtocolError, UpstreamTimeoutError,
} from './errors.js'
import type { RequestBody } from './body.js'
import { filterResponseHeaders } from './headers.js'
import type { NormalizedUpstream } from './options.js'
import type { UpstreamServer } from './upstream/server.js'

/** What of a pool's settings its servers' connection pools are built from. */
export type ForwardPool = Pick<NormalizedUpstream, 'tls' | 'connections'>

/** The server's origin as undici accepts it: `ws:`/`wss:` servers take plain requests over `http:`/`https:`. */
function httpOrigin (server: UpstreamServer): string {
  return server.url.startsWith('ws') ? `http${server.url.slice(2)}` : server.url
}

function bodyLength (body: RequestBody): number {
  return body === null ? 0 : Buffer.isBuffer(body) ? body.length : body.seen
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

export interface ForwardRequest {
  method: string
  path: string
  headers: string[]
  body: RequestBody
  /** Told about failures after the answer began (the client's connection is cut then). */
  onLateError: (err: SockgateError) => void
  /** A `Set-Cookie` value added to the answer, next to the upstream's own (sticky cookie). */
  setCookie?: string | undefined
  /** Shown the status and the first body chunk of the answer before it is relayed (engine.io sid learning). */
  onFirstChunk?: ((statusCode: number, chunk: Buffer) => void) | undefined
  /** May change the answer's headers before they are sent (the `onResponse` option); a throw fails the request. */
  onResponse?: ((headers: Record<string, string | string[]>) => void) | undefined
}

/**
 * HTTP forwarding over one keep-alive connection pool (undici) per upstream
 * server. Bodies stream both ways with backpressure: when the client reads
 * slowly, the upstream response is paused rather than buffered.
 */
export class Forwarder {
  private readonly pools = new Map<UpstreamServer, UndiciPool>()

  constructor (private readonly timeouts: { connect: number, request: number, send: number }) {}

  private poolFor (server: UpstreamServer, { tls, connections }: ForwardPool): UndiciPool {
    let pool = this.pools.get(server)
    if (pool === undefined) {
      pool = new UndiciPool(httpOrigin(server), {
        // Past the cap, requests wait in undici's queue rather than opening a connection each (a pipelined burst would).
        connections,
        connect: {
          timeout: this.timeouts.connect,
          ...(tls === null ? {} : { ca: tls.ca, rejectUnauthorized: tls.rejectUnauthorized, servername: tls.servername }),
        },
        headersTimeout: this.timeouts.request,
        bodyTimeout: this.timeouts.request,
      })
      this.pools.set(server, pool)
    }
    return pool
  }

  /**
   * Send one request to `server` and stream the answer into `res`. Resolves
   * once the answer has begun (from then on it is this server's), rejects
   * with a SockgateError when it failed before that.
   *
   * While the client's buffer is full, undici is paused (its body timer
   * with it), so `timeouts.send` bounds the wait for 'drain': past it the
   * client is cut and the upstream request aborted.
   */
  forward (server: UpstreamServer, pool: ForwardPool, res: ServerResponse, fr: ForwardRequest): Promise<void> {
    const timeouts = this.timeouts
    return new Promise((resolve, reject) => {
      let started = false
      // undici calls onRequestStart just before it writes the request on a connected socket (client-h1.js writeH1).
      let sent = false
      let status = 0
      let firstChunk = fr.onFirstChunk
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
        server.bytesIn += bodyLength(fr.body)
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
        onResponseStart (c, statusCode, headers, statusMessage) {
          // 1xx (102, 103) are skipped: the final answer follows. undici itself refuses a 100 (see classify()).
          if (statusCode < 200) return
          const out = filterResponseHeaders(headers as Record<string, string | string[]>)
          // RFC 9110 §8.6: a server never sends Content-Length with a 204, whatever the upstream wrote.
          if (statusCode === 204) delete out['content-length']
          if (fr.setCookie !== undefined) appendSetCookie(out, fr.setCookie)
          if (fr.onResponse !== undefined) {
            try {
              fr.onResponse(out)
            } catch (err) {
              // Nothing reached the client yet: the request fails as a whole, and this server is not blamed.
              reject(err)
              c.abort(err as Error)
              return
            }
          }
          started = true
          server.countResponse(statusCode)
          resolve()
          status = statusCode
          res.writeHead(statusCode, statusMessage ?? '', out)
        },
        onResponseData (c, chunk) {
          server.bytesOut += chunk.length
          if (firstChunk !== undefined) {
            firstChunk(status, chunk)
            firstChunk = undefined
          }
          if (!res.write(chunk)) waitForDrain(c)
        },
        onResponseEnd () {
          settle()
          res.end()
        },
        onResponseError (_c, err) {
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
            fr.onLateError(error)
          } else {
            reject(error)
          }
        },
      }
      this.poolFor(server, pool).dispatch({
        method: fr.method as Dispatcher.HttpMethod,
        path: fr.path,
        headers: fr.headers,
        body: fr.body,
      }, handler)
    })
  }

  /**
   * Drop the connection pool of a server that left its pool. Requests in
   * flight (a long-poll, say) finish first; idle connections close at once.
   */
  forget (server: UpstreamServer): void {
    const pool = this.pools.get(server)
    this.pools.delete(server)
    pool?.close().catch(() => {})
  }

  /** Close every connection pool; in-flight requests are cut. */
  async close (): Promise<void> {
    const pools = [...this.pools.values()]
    this.pools.clear()
    await Promise.allSettled(pools.map((p) => p.destroy()))
  }
}

/** Adds `value` to the `set-cookie` field of undici's response headers, keeping the upstream's own cookies. */
function appendSetCookie (headers: Record<string, string | string[]>, value: string): void {
  const name = Object.keys(headers).find((k) => k.toLowerCase() === 'set-cookie') ?? 'set-cookie'
  const existing = headers[name]
  headers[name] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value]
}
