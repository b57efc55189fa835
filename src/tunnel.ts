import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { UpstreamServer } from './upstream/server.js'
import type { TunnelCloseEvent, TunnelCloseReason, TunnelOpenEvent } from './types.js'

/** How long a side that has sent its FIN may linger once the other side has fully closed. */
const LINGER_MS = 10_000
/** TCP keepalive probe delay when `timeouts.idle` is 0, so dead peers are found without closing idle tunnels. */
const KEEPALIVE_MS = 30_000

/**
 * Two sockets piped into each other with backpressure (`pipe` pauses the
 * reader while the writer's buffer is full, so a slow reader bounds memory).
 * A FIN from one side is passed on as a FIN to the other (half-close); an
 * error on either side destroys both; the first cause is the reason reported.
 * Bytes are read off the sockets' own counters at the end, so the data path
 * pays nothing per chunk.
 */
export class Tunnel {
  readonly info: TunnelOpenEvent
  readonly server: UpstreamServer
  private readonly client: Duplex
  private readonly upstream: Socket
  private readonly startedAt = Date.now()
  /** Bytes already written before the tunnel began (the handshake heads), not counted as traffic. */
  private readonly clientBase: number
  private readonly upstreamBase: number
  /** Bytes already added to the server's counters by `settle()`. */
  private settledIn = 0
  private settledOut = 0
  private reason: TunnelCloseReason | undefined
  private error: Error | undefined
  private closedSides = 0
  private lingerTimer: NodeJS.Timeout | undefined
  private readonly onClose: (tunnel: Tunnel, event: TunnelCloseEvent) => void

  constructor (client: Duplex, upstream: Socket, server: UpstreamServer, info: TunnelOpenEvent, idleMs: number,
    onClose: (tunnel: Tunnel, event: TunnelCloseEvent) => void) {
    this.client = client
    this.upstream = upstream
    this.server = server
    this.info = info
    this.onClose = onClose
    const c = client as Partial<Socket>
    this.clientBase = c.bytesWritten ?? 0
    this.upstreamBase = upstream.bytesWritten

    for (const s of [c, upstream]) {
      s.setNoDelay?.(true)
      if (idleMs > 0) s.setTimeout?.(idleMs)
      else s.setKeepAlive?.(true, KEEPALIVE_MS)
    }
    client.on('error', (err) => this.fail('client-error', err))
    upstream.on('error', (err) => this.fail('upstream-error', err))
    client.on('timeout', () => this.fail('idle-timeout'))
    upstream.on('timeout', () => this.fail('idle-timeout'))
    client.on('close', () => this.sideClosed('client-closed', upstream))
    upstream.on('close', () => this.sideClosed('upstream-closed', client))
    client.pipe(upstream)
    upstream.pipe(client)
    client.resume()
  }

  /** End the tunnel now (gateway close, drain deadline). */
  destroy (reason: TunnelCloseReason): void {
    this.reason ??= reason
    this.client.destroy()
    this.upstream.destroy()
  }

  private fail (reason: TunnelCloseReason, err?: Error): void {
    if (this.reason === undefined) {
      this.reason = reason
      this.error = err
    }
    this.client.destroy()
    this.upstream.destroy()
  }

  private sideClosed (reason: TunnelCloseReason, other: Duplex): void {
    this.reason ??= reason
    this.closedSides++
    if (this.closedSides === 1) {
      // `pipe` has usually ended the other side's writable (FIN) already; ending it twice would only
      // build an error. Give it a bounded time to flush and close.
      if (!other.writableEnded) other.end()
      this.lingerTimer = setTimeout(() => other.destroy(), LINGER_MS).unref()
      return
    }
    clearTimeout(this.lingerTimer)
    this.finish()
  }

  /**
   * Add the bytes moved since the last call to the server's counters, so the
   * status page and metrics see long-lived tunnels while they run. Read off
   * the sockets' own counters: the data path pays nothing per chunk.
   */
  settle (): void {
    const c = this.client as Partial<Socket>
    const bytesIn = this.upstream.bytesWritten - this.upstreamBase
    const bytesOut = (c.bytesWritten ?? 0) - this.clientBase
    this.server.bytesIn += bytesIn - this.settledIn
    this.server.bytesOut += bytesOut - this.settledOut
    this.settledIn = bytesIn
    this.settledOut = bytesOut
  }

  private finish (): void {
    this.settle()
    this.onClose(this, {
      ...this.info,
      reason: this.reason ?? 'client-closed',
      bytesIn: this.settledIn,
      bytesOut: this.settledOut,
      durationMs: Date.now() - this.startedAt,
      ...(this.error === undefined ? {} : { error: this.error }),
    })
  }
}
