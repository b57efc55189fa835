import { createRequire } from 'node:module'
import type { Pool as ConnectionPool } from 'undici'
import { createBalancer } from '../balance/index.js'
import { SlowStart } from '../balance/slow-start.js'
import { Stickiness } from '../balance/stickiness.js'
import type { StoreDownListener } from '../balance/session-store.js'
import { DEFAULT_TIMEOUTS, normalizeServer, type NormalizedOptions, type NormalizedUpstream } from '../options.js'
import { UpstreamServer } from './server.js'
import type { Balancer, PickContext } from '../balance/types.js'
import type { ServerOption } from '../types.js'

/** Options of `pool.drain()`. */
export interface DrainOptions {
  /** Milliseconds the server's open tunnels may keep running before they are ended. Default: `10000`. */
  timeout?: number
}

/** How long `pool.drain()` lets tunnels run when no `timeout` is given. */
export const DEFAULT_DRAIN_TIMEOUT = 10_000

/** Told when passive health or an operator changes whether a server takes work. */
export type StateListener = (server: UpstreamServer, up: boolean, reason: string) => void

const require = createRequire(import.meta.url)
/**
 * undici, loaded when the first plain request is forwarded: about 5 MB of
 * heap (more than half of a gateway's at start) and 10 MB of RSS, which a
 * gateway that only tunnels WebSockets never needs.
 */
let undici: typeof import('undici') | undefined

/** The server's origin as undici accepts it: `ws:`/`wss:` servers take plain requests over `http:`/`https:`. */
function httpOrigin (server: UpstreamServer): string {
  return server.url.startsWith('ws') ? `http${server.url.slice(2)}` : server.url
}

/**
 * A named pool of upstream servers: two tiers (primaries, then backups), a
 * balancing method, passive health (nginx `max_fails` / `fail_timeout`),
 * each server's keep-alive connections for HTTP, and the run-time controls
 * behind `gateway.pool(name)`.
 */
export class Pool {
  readonly name: string
  readonly spec: NormalizedUpstream
  /** Replaced, never mutated, when membership changes: hash rings cache per array. */
  primaries: readonly UpstreamServer[]
  backups: readonly UpstreamServer[]
  private readonly balancer: Balancer
  private readonly onState: StateListener
  /** Sticky sessions (`sticky` option), consulted before the balancer; null when the pool has none. */
  readonly sticky: Stickiness | null
  /** Ramps servers that come back or join up to their weight (`slowStart`); null when the pool has none. */
  private readonly slowStart: SlowStart | null
  private readonly timeouts: NormalizedOptions['timeouts']
  /** Each server's keep-alive HTTP connections (undici), made on first use. */
  private readonly connections = new Map<UpstreamServer, ConnectionPool>()
  /** `servers`, cached for the tiers it was built from (the cookie table is cached per array). */
  private all: { primaries: readonly UpstreamServer[], backups: readonly UpstreamServer[], servers: readonly UpstreamServer[] } | undefined

  /** `onStoreDown`: told once when the pool's shared session store (`sticky.engineIo.store`) stops working. */
  constructor (spec: NormalizedUpstream, onState: StateListener, timeouts: NormalizedOptions['timeouts'] = DEFAULT_TIMEOUTS,
    onStoreDown: StoreDownListener = () => {}) {
    this.name = spec.name
    this.spec = spec
    this.onState = onState
    this.timeouts = timeouts
    this.balancer = createBalancer(spec.balance)
    this.sticky = Stickiness.enabled(spec.sticky) ? new Stickiness(spec.sticky, () => this.servers, {}, { pool: spec.name, onStoreDown }) : null
    this.slowStart = spec.slowStart > 0 ? new SlowStart(spec.slowStart) : null
    const servers = spec.servers.map((s) => new UpstreamServer(s))
    this.primaries = servers.filter((s) => !s.backup)
    this.backups = servers.filter((s) => s.backup)
  }

  /** Every server, primaries first. The same array until membership changes. */
  get servers (): readonly UpstreamServer[] {
    const all = this.all
    if (all !== undefined && all.primaries === this.primaries && all.backups === this.backups) return all.servers
    const servers = [...this.primaries, ...this.backups]
    this.all = { primaries: this.primaries, backups: this.backups, servers }
    return servers
  }

  /** The server with this URL (any spelling `new URL()` normalises to the same origin). */
  find (url: string): UpstreamServer | undefined {
    const origin = new URL(url).origin
    return this.servers.find((s) => s.url === origin)
  }

  /**
   * Pick a server for new work, skipping `exclude` (servers failover already
   * tried). Primaries first, backups only when no primary can take it. When
   * every remaining server is out only because of passive failures, the one
   * that failed longest ago is probed rather than refusing everybody until
   * `failTimeout` runs out (nginx answers 502 for that long).
   *
   * A request pinned by stickiness (cookie or engine.io `sid`) goes to its
   * server while that server is `availableForSticky` (draining included) and
   * not in `exclude`; otherwise it is balanced like any other.
   */
  pick (ctx: PickContext, exclude?: ReadonlySet<UpstreamServer>): UpstreamServer | undefined {
    const now = ctx.now
    if (this.slowStart?.ramping === true) this.slowStart.advance(now)
    if (this.sticky !== null) {
      const pinned = this.sticky.lookup(ctx.req)
      if (pinned !== undefined && pinned.availableForSticky(now) && exclude?.has(pinned) !== true) return pinned
    }
    const usable = exclude === undefined || exclude.size === 0
      ? (s: UpstreamServer) => s.available(now)
      : (s: UpstreamServer) => s.available(now) && !exclude.has(s)
    return this.balancer.pick(this.primaries, usable, ctx) ??
      (this.backups.length > 0 ? this.balancer.pick(this.backups, usable, ctx) : undefined) ??
      this.probeCandidate(now, exclude)
  }

  private probeCandidate (now: number, exclude?: ReadonlySet<UpstreamServer>): UpstreamServer | undefined {
    let oldest: UpstreamServer | undefined
    for (const s of this.servers) {
      if (exclude?.has(s) === true || !s.passiveDown(now)) continue
      if (s.adminDown || s.healthDown || s.draining || s.full) continue
      if (oldest === undefined || s.passiveUntil < oldest.passiveUntil) oldest = s
    }
    return oldest
  }

  /** The keep-alive HTTP connections to `server`, where plain requests and long-polls go. */
  connectionsTo (server: UpstreamServer): ConnectionPool {
    let pool = this.connections.get(server)
    if (pool === undefined) {
      const { tls, connections } = this.spec
      undici ??= require('undici') as typeof import('undici')
      pool = new undici.Pool(httpOrigin(server), {
        // Past the cap, requests wait in undici's queue rather than opening a connection each (a pipelined burst would).
        connections,
        connect: {
          timeout: this.timeouts.connect,
          ...(tls === null ? {} : { ca: tls.ca, rejectUnauthorized: tls.rejectUnauthorized, servername: tls.servername }),
        },
        headersTimeout: this.timeouts.request,
        bodyTimeout: this.timeouts.request,
      })
      this.connections.set(server, pool)
    }
    return pool
  }

  /** Close every server's HTTP connections; requests in flight are cut. */
  async closeConnections (): Promise<void> {
    const pools = [...this.connections.values()]
    this.connections.clear()
    await Promise.allSettled(pools.map((p) => p.destroy()))
  }

  /** A connect error, reset before an answer, or timeout on real traffic. */
  recordFailure (server: UpstreamServer, now: number): void {
    server.failures++
    const { maxFails, failTimeout } = this.spec
    if (maxFails === 0) return
    const recent = server.recentFailures.filter((t) => t > now - failTimeout)
    recent.push(now)
    if (recent.length < maxFails) {
      server.recentFailures = recent
      return
    }
    const wasDown = server.passiveDown(now)
    server.recentFailures = []
    server.passiveUntil = now + failTimeout
    // Out for failTimeout, then back with no event: its ramp is due from then (the one a success brings is sooner).
    this.rampUp(server, server.passiveUntil)
    if (!wasDown) this.onState(server, false, 'passive')
  }

  /** A completed exchange: a server out on passive failures is back at once. */
  recordSuccess (server: UpstreamServer): void {
    if (server.passiveUntil === 0 && server.recentFailures.length === 0) return
    const wasDown = server.passiveUntil > Date.now()
    server.passiveUntil = 0
    server.recentFailures = []
    if (wasDown) {
      this.rampUp(server)
      this.onState(server, true, 'passive-recovered')
    }
  }

  /**
   * A server that was out, or is new, takes new work again from `at`: with
   * `slowStart`, from a tenth of its weight up to all of it over that
   * window. Every way back in comes here (health checks, passive recovery,
   * `markUp`, `undrain`, `add`). @internal
   */
  rampUp (server: UpstreamServer, at = Date.now()): void {
    this.slowStart?.begin(server, at)
  }

  /** Add a server at run time; it takes new work at once (ramping up over `slowStart` when set). */
  add (option: ServerOption): UpstreamServer {
    const spec = normalizeServer(option, `pool(${this.name}).add`)
    if (this.servers.some((s) => s.url === spec.url)) throw new Error(`${spec.url} is already in pool ${this.name}`)
    const server = new UpstreamServer(spec)
    this.rampUp(server)
    if (server.backup) this.backups = [...this.backups, server]
    else this.primaries = [...this.primaries, server]
    return server
  }

  /**
   * Remove a server: no new work goes to it; its open tunnels run on, and
   * requests in flight (a long-poll, say) finish before its idle
   * connections close. Returns it, or undefined when unknown.
   */
  remove (url: string): UpstreamServer | undefined {
    const server = this.find(url)
    if (server === undefined) return undefined
    this.primaries = this.primaries.filter((s) => s !== server)
    this.backups = this.backups.filter((s) => s !== server)
    this.sticky?.forgetServer(server)
    this.slowStart?.forget(server)
    this.connections.get(server)?.close().catch(() => {})
    this.connections.delete(server)
    return server
  }

  /** Take a server out by hand (nginx `down`); open tunnels run on. */
  markDown (url: string): boolean {
    return this.setAdmin(url, true)
  }

  /** Put a server taken out by hand back in. */
  markUp (url: string): boolean {
    return this.setAdmin(url, false)
  }

  /**
   * Drain a server: no new sessions from now on (sticky ones continue), its
   * open tunnels run for up to `timeout` ms (default 10 s) and are then ended.
   * Resolves with true once it has no open tunnels; false when unknown.
   */
  drain (url: string, options: DrainOptions = {}): Promise<boolean> {
    const server = this.find(url)
    if (server === undefined) return Promise.resolve(false)
    return server.startDrain(options.timeout ?? DEFAULT_DRAIN_TIMEOUT)
  }

  /** Let a drained server take new sessions again (ramping up over `slowStart` when set); stops a drain still waiting. */
  undrain (url: string): boolean {
    const server = this.find(url)
    if (server?.draining === true) this.rampUp(server)
    server?.stopDrain()
    return server !== undefined
  }

  private setAdmin (url: string, down: boolean): boolean {
    const server = this.find(url)
    if (server === undefined) return false
    if (server.adminDown !== down) {
      server.adminDown = down
      if (!down) this.rampUp(server)
      this.onState(server, !down, 'admin')
    }
    return true
  }
}
