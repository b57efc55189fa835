import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { UpstreamServer } from './upstream/server.js'
import type { TunnelCloseEvent, TunnelCloseReason, TunnelOpenEvent } from './types.js'

/** How long a side that has sent its FIN may linger once the other side has fully closed. */
const LINGER_MS = 10_000
/** TCP keepalive probe delay when `timeouts.idle` is 0, so dead peers are found without closing idle tunnels. */
const KEEPALIVE_MS = 30_000

/**
 * Copy what `from` reads into `to` with backpressure: `from` stops reading
 * while `to`'s buffer is full and goes on at its 'drain', so a slow reader
 * bounds memory. A FIN from `from` is passed on as a FIN (half-close).
 *
 * This is the part of `pipe()` a tunnel needs. `pipe()` also puts error,
 * close, finish and unpipe listeners on both ends (nine closures and a pipe
 * state per direction); the tunnel handles errors and closes itself, so those
 * only cost memory per idle tunnel and work per handshake (issue 10).
 */
function pump (from: Duplex, to: Duplex): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause()
  })
  to.on('drain', () => from.resume())
  // Ending an ended or destroyed writable only builds an error nobody reads.
  from.on('end', () => {
    if (!to.writableEnded && !to.destroyed) to.end()
  })
  // The handshake left it paused (holdEarlyData) or flowing with no reader; either way, read now.
  from.resume()
}

/**
 * Two sockets pumped into each other with backpressure (see `pump`). A FIN
 * from one side is passed on as a FIN to the other (half-close); an error on
 * either side destroys both; the first cause is the reason reported. Bytes
 * are read off the sockets' own counters at the end, so the data path pays
 * nothing per chunk.
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
    // A 'timeout' can only come from an armed socket timer: timeouts.idle's, or one the
    // application's server set on the client socket (`server.timeout`), which ends it as before.
    if (idleMs > 0 || (c.timeout ?? 0) > 0) client.on('timeout', () => this.fail('idle-timeout'))
    if (idleMs > 0) upstream.on('timeout', () => this.fail('idle-timeout'))
    client.on('close', () => this.sideClosed('client-closed', upstream))
    upstream.on('close', () => this.sideClosed('upstream-closed', client))
    pump(client, upstream)
    pump(upstream, client)
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
      // `pump` has usually ended the other side's writable (FIN) already; ending it twice would only
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
