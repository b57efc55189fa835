import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import { MAX_TIMER_MS, type UpstreamServer } from './upstream/server.js'
import type { TunnelCloseEvent, TunnelCloseReason, TunnelOpenEvent } from './types.js'

/** How long a side that has sent its FIN may linger once the other side has fully closed. */
const LINGER_MS = 10_000
/** TCP keepalive probe delay when `timeouts.idle` is 0, so dead peers are found without closing idle tunnels. */
const KEEPALIVE_MS = 30_000
/** Each tunnel's `timeouts.maxLifetime` is moved by up to this fraction either way, so tunnels opened together end apart. */
export const LIFETIME_JITTER = 0.1
/**
 * Delays a lifetime can take within its jitter. Node keeps one timer list per
 * distinct delay, so a delay drawn to the millisecond would cost a list per
 * tunnel; 201 steps are as even a spread and share their lists.
 */
const LIFETIME_STEPS = 200

/** The socket at the other end of the tunnel, and the tunnel itself, kept on each of its two sockets. */
const kPeer = Symbol('sockgate.tunnelPeer')
const kTunnel = Symbol('sockgate.tunnel')

type TunnelSocket = Duplex & { [kPeer]: TunnelSocket, [kTunnel]: Tunnel }

/*
 * The listeners are shared by every tunnel and find their sockets through
 * `this` (the emitter) and the two properties above: an idle tunnel then
 * holds no closure of its own, which is most of what it would cost in heap.
 */

/** Copy what one side reads to the other; stop reading while the other's buffer is full (a slow reader bounds memory). */
function onData (this: TunnelSocket, chunk: Buffer): void {
  if (!this[kPeer].write(chunk)) this.pause()
}

/** The buffer of this side emptied: the other side may read again. */
function onDrain (this: TunnelSocket): void {
  this[kPeer].resume()
}

/** A FIN read on one side is passed on as a FIN (half-close). Ending an ended or destroyed writable only builds an error. */
function onEnd (this: TunnelSocket): void {
  const to = this[kPeer]
  if (!to.writableEnded && !to.destroyed) to.end()
}

function onClientError (this: TunnelSocket, err: Error): void { this[kTunnel].fail('client-error', err) }
function onUpstreamError (this: TunnelSocket, err: Error): void { this[kTunnel].fail('upstream-error', err) }
function onIdle (this: TunnelSocket): void { this[kTunnel].fail('idle-timeout') }
function onMaxLifetime (tunnel: Tunnel): void { tunnel.fail('max-lifetime') }
function onClientClose (this: TunnelSocket): void { this[kTunnel].sideClosed('client-closed', this[kPeer]) }
function onUpstreamClose (this: TunnelSocket): void { this[kTunnel].sideClosed('upstream-closed', this[kPeer]) }

/**
 * How long one tunnel may live: `maxLifetime` moved by a uniform draw within
 * ±{@link LIFETIME_JITTER} of it, in {@link LIFETIME_STEPS} steps. `random`
 * returns a number in `[0, 1)`; tests pass their own.
 */
export function lifetimeDelay (maxLifetime: number, random: () => number = Math.random): number {
  const step = maxLifetime * 2 * LIFETIME_JITTER / LIFETIME_STEPS
  const delay = maxLifetime * (1 - LIFETIME_JITTER) + Math.floor(random() * (LIFETIME_STEPS + 1)) * step
  return Math.min(MAX_TIMER_MS, Math.round(delay))
}

/**
 * Copy what `from` reads into `to` with backpressure: `from` stops reading
 * while `to`'s buffer is full and goes on at its 'drain'; a FIN is passed on.
 * This is the part of `pipe()` a tunnel needs: `pipe()` also puts error,
 * close, finish and unpipe listeners on both ends (nine closures and a pipe
 * state per direction), which the tunnel does not use (issue 10).
 */
function pump (from: TunnelSocket, to: TunnelSocket): void {
  from[kPeer] = to
  from.on('data', onData)
  to.on('drain', onDrain)
  from.on('end', onEnd)
  // The handshake left it paused (holdEarlyData) or flowing with no reader; either way, read now.
  from.resume()
}

/**
 * Two sockets pumped into each other with backpressure (see `pump`). A FIN
 * from one side is passed on as a FIN to the other (half-close); an error on
 * either side destroys both; the first cause is the reason reported. Bytes
 * are read off the upstream socket's own counters (what it was written is
 * what the client sent, what it read is what the client was sent), so the
 * data path pays nothing per chunk and the client side may be any duplex:
 * a socket, or an HTTP/2 stream (RFC 8441), which has no counters.
 */
export class Tunnel {
  readonly info: TunnelOpenEvent
  readonly server: UpstreamServer
  private readonly client: Duplex
  private readonly upstream: Socket
  private readonly startedAt = Date.now()
  /** The upstream's counters when the tunnel began: the handshake heads are not traffic. */
  private readonly writtenBase: number
  private readonly readBase: number
  /** Bytes already added to the server's counters by `settle()`. */
  private settledIn = 0
  private settledOut = 0
  private reason: TunnelCloseReason | undefined
  private error: Error | undefined
  private closedSides = 0
  private lingerTimer: NodeJS.Timeout | undefined
  /** Set only with `timeouts.maxLifetime`: without it a tunnel has no such field at all (`declare` emits none). */
  private declare lifetimeTimer: NodeJS.Timeout | undefined
  private readonly onClose: (tunnel: Tunnel, event: TunnelCloseEvent) => void

  /** `maxLifetimeMs` > 0 ends the tunnel (reason `max-lifetime`) after {@link lifetimeDelay} of it. */
  constructor (client: Duplex, upstream: Socket, server: UpstreamServer, info: TunnelOpenEvent, idleMs: number,
    onClose: (tunnel: Tunnel, event: TunnelCloseEvent) => void, maxLifetimeMs = 0) {
    this.client = client
    this.upstream = upstream
    this.server = server
    this.info = info
    this.onClose = onClose
    const c = client as Partial<Socket>
    this.writtenBase = upstream.bytesWritten
    this.readBase = upstream.bytesRead

    for (const s of [c, upstream]) {
      s.setNoDelay?.(true)
      if (idleMs > 0) s.setTimeout?.(idleMs)
      else s.setKeepAlive?.(true, KEEPALIVE_MS)
    }
    const a = client as TunnelSocket
    const b = upstream as unknown as TunnelSocket
    a[kTunnel] = this
    b[kTunnel] = this
    a.on('error', onClientError)
    b.on('error', onUpstreamError)
    // A 'timeout' can only come from an armed socket timer: timeouts.idle's, or one the
    // application's server set on the client socket (`server.timeout`), which ends it as before.
    if (idleMs > 0 || (c.timeout ?? 0) > 0) a.on('timeout', onIdle)
    if (idleMs > 0) b.on('timeout', onIdle)
    pump(a, b)
    pump(b, a)
    a.on('close', onClientClose)
    b.on('close', onUpstreamClose)
    // The tunnel's own sockets keep the process alive while it is open; its end of life need not.
    if (maxLifetimeMs > 0) this.lifetimeTimer = setTimeout(onMaxLifetime, lifetimeDelay(maxLifetimeMs), this).unref()
  }

  /** End the tunnel now (gateway close, drain deadline). */
  destroy (reason: TunnelCloseReason): void {
    this.reason ??= reason
    this.client.destroy()
    this.upstream.destroy()
  }

  /** @internal One side failed (error, idle timeout, max lifetime): both go, and the first cause is the reason. */
  fail (reason: TunnelCloseReason, err?: Error): void {
    if (this.reason === undefined) {
      this.reason = reason
      this.error = err
    }
    this.client.destroy()
    this.upstream.destroy()
  }

  /** @internal One side closed: the other gets a bounded time to flush, then the tunnel is over. */
  sideClosed (reason: TunnelCloseReason, other: Duplex): void {
    this.reason ??= reason
    this.closedSides++
    if (this.closedSides === 1) {
      if (this.lifetimeTimer !== undefined) clearTimeout(this.lifetimeTimer)
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
   * the upstream socket's own counters: the data path pays nothing per chunk.
   */
  settle (): void {
    const bytesIn = this.upstream.bytesWritten - this.writtenBase
    const bytesOut = this.upstream.bytesRead - this.readBase
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

/**
 * End `tunnels` one after another, evenly over `spread` ms (the first at
 * once), so the clients they carried do not all come back in the same
 * second. Resolves once the last has been ended. One timer at a time,
 * however many tunnels; the clock is `performance.now()`, which a test's
 * fake `Date` leaves alone.
 */
export function endSpread (tunnels: readonly Tunnel[], reason: TunnelCloseReason, spread: number): Promise<void> {
  return new Promise((resolve) => {
    const start = performance.now()
    const gap = spread / tunnels.length
    let next = 0
    const step = (): void => {
      // A late timer (a busy event loop) ends every tunnel already due: the whole still takes `spread`.
      const due = Math.min(tunnels.length, Math.floor((performance.now() - start) / gap) + 1)
      while (next < due) tunnels[next++]!.destroy(reason)
      if (next === tunnels.length) resolve()
      else setTimeout(step, Math.max(1, start + next * gap - performance.now()))
    }
    step()
  })
}
