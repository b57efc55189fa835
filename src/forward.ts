import type { ServerResponse } from 'node:http'
import { Pool as UndiciPool, type Dispatcher } from 'undici'
import { ClientAbortedError, SockgateError, UpstreamConnectError, UpstreamProtocolError, UpstreamTimeoutError } from './errors.js'
import type { RequestBody } from './body.js'
import { filterResponseHeaders } from './headers.js'
import { countResponse } from './metrics.js'
import type { UpstreamServer } from './upstream/server.js'
import type { UpstreamTlsOptions } from './types.js'

/** The server's origin as undici accepts it: `ws:`/`wss:` servers take plain requests over `http:`/`https:`. */
function httpOrigin (server: UpstreamServer): string {
  return server.url.startsWith('ws') ? `http${server.url.slice(2)}` : server.url
}

function bodyLength (body: RequestBody): number {
  return body === null ? 0 : Buffer.isBuffer(body) ? body.length : body.seen
}

/** Map an undici failure to what the client and operator are told. */
function classify (err: Error & { code?: string }, server: UpstreamServer, requestMs: number, connectMs: number): SockgateError {
  if (err instanceof SockgateError) return err
  switch (err.code) {
    case 'UND_ERR_CONNECT_TIMEOUT': return new UpstreamTimeoutError(server.url, 'connect', connectMs)
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT': return new UpstreamTimeoutError(server.url, 'request', requestMs)
    case 'UND_ERR_ABORTED': return new ClientAbortedError(err)
  }
  if (err.name === 'HTTPParserError' || err.code?.startsWith('HPE_') === true) {
    return new UpstreamProtocolError(server.url, 'the answer is not valid HTTP', err)
  }
  if (err.code === 'UND_ERR_INFO' || /upgrade/i.test(err.message)) {
    return new UpstreamProtocolError(server.url, 'it switched protocols (101) on a plain request', err)
  }
  return new UpstreamConnectError(server.url, err)
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
  private readonly connectMs: number
  private readonly requestMs: number

  constructor (timeouts: { connect: number, request: number }) {
    this.connectMs = timeouts.connect
    this.requestMs = timeouts.request
  }

  private poolFor (server: UpstreamServer, tls: UpstreamTlsOptions | null): UndiciPool {
    let pool = this.pools.get(server)
    if (pool === undefined) {
      pool = new UndiciPool(httpOrigin(server), {
        connect: {
          timeout: this.connectMs,
          ...(tls === null ? {} : { ca: tls.ca, rejectUnauthorized: tls.rejectUnauthorized, servername: tls.servername }),
        },
        headersTimeout: this.requestMs,
        bodyTimeout: this.requestMs,
      })
      this.pools.set(server, pool)
    }
    return pool
  }

  /**
   * Send one request to `server` and stream the answer into `res`. Resolves
   * once the answer has begun (from then on it is this server's), rejects
   * with a SockgateError when it failed before that.
   */
  forward (server: UpstreamServer, tls: UpstreamTlsOptions | null, res: ServerResponse, fr: ForwardRequest): Promise<void> {
    const requestMs = this.requestMs
    const connectMs = this.connectMs
    return new Promise((resolve, reject) => {
      let started = false
      let status = 0
      let firstChunk = fr.onFirstChunk
      let controller: Dispatcher.DispatchController | undefined
      const onClientClose = (): void => {
        if (!res.writableFinished) controller?.abort(new ClientAbortedError())
      }
      const onDrain = (): void => controller?.resume()
      res.once('close', onClientClose)
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart (c) {
          controller = c
          if (res.destroyed) c.abort(new ClientAbortedError())
        },
        onResponseStart (c, statusCode, headers, statusMessage) {
          if (statusCode < 200) return
          const out = filterResponseHeaders(headers as Record<string, string | string[]>)
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
          countResponse(server, statusCode)
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
          if (!res.write(chunk)) {
            c.pause()
            res.once('drain', onDrain)
          }
        },
        onResponseEnd () {
          server.bytesIn += bodyLength(fr.body)
          res.removeListener('close', onClientClose)
          res.end()
        },
        onResponseError (_c, err) {
          server.bytesIn += bodyLength(fr.body)
          res.removeListener('close', onClientClose)
          const error = classify(err, server, requestMs, connectMs)
          if (started) {
            res.destroy()
            fr.onLateError(error)
          } else {
            reject(error)
          }
        },
      }
      this.poolFor(server, tls).dispatch({
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
