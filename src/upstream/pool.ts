import { createBalancer } from '../balance/index.js'
import { normalizeServer, type NormalizedUpstream } from '../options.js'
import { UpstreamServer } from './server.js'
import type { Balancer, PickContext } from '../balance/types.js'
import type { ServerOption } from '../types.js'

/** Told when passive health or an operator changes whether a server takes work. */
export type StateListener = (server: UpstreamServer, up: boolean, reason: string) => void

/**
 * A named pool of upstream servers: two tiers (primaries, then backups), a
 * balancing method, passive health (nginx `max_fails` / `fail_timeout`) and
 * the run-time controls behind `gateway.pool(name)`.
 */
export class Pool {
  readonly name: string
  readonly spec: NormalizedUpstream
  /** Replaced, never mutated, when membership changes: hash rings cache per array. */
  primaries: readonly UpstreamServer[]
  backups: readonly UpstreamServer[]
  private readonly balancer: Balancer
  private readonly onState: StateListener

  constructor (spec: NormalizedUpstream, onState: StateListener) {
    this.name = spec.name
    this.spec = spec
    this.onState = onState
    this.balancer = createBalancer(spec.balance)
    const servers = spec.servers.map((s) => new UpstreamServer(s))
    this.primaries = servers.filter((s) => !s.backup)
    this.backups = servers.filter((s) => s.backup)
  }

  /** Every server, primaries first. */
  get servers (): readonly UpstreamServer[] {
    return [...this.primaries, ...this.backups]
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
   */
  pick (ctx: PickContext, exclude?: ReadonlySet<UpstreamServer>): UpstreamServer | undefined {
    const now = ctx.now
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
    if (!wasDown) this.onState(server, false, 'passive')
  }

  /** A completed exchange: a server out on passive failures is back at once. */
  recordSuccess (server: UpstreamServer): void {
    if (server.passiveUntil === 0 && server.recentFailures.length === 0) return
    const wasDown = server.passiveUntil > Date.now()
    server.passiveUntil = 0
    server.recentFailures = []
    if (wasDown) this.onState(server, true, 'passive-recovered')
  }

  /** Add a server at run time; it takes new work at once. */
  add (option: ServerOption): UpstreamServer {
    const spec = normalizeServer(option, `pool(${this.name}).add`)
    if (this.servers.some((s) => s.url === spec.url)) throw new Error(`${spec.url} is already in pool ${this.name}`)
    const server = new UpstreamServer(spec)
    if (server.backup) this.backups = [...this.backups, server]
    else this.primaries = [...this.primaries, server]
    return server
  }

  /** Remove a server: no new work goes to it; its open tunnels run on. Returns it, or undefined when unknown. */
  remove (url: string): UpstreamServer | undefined {
    const server = this.find(url)
    if (server === undefined) return undefined
    this.primaries = this.primaries.filter((s) => s !== server)
    this.backups = this.backups.filter((s) => s !== server)
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

  private setAdmin (url: string, down: boolean): boolean {
    const server = this.find(url)
    if (server === undefined) return false
    if (server.adminDown !== down) {
      server.adminDown = down
      this.onState(server, !down, 'admin')
    }
    return true
  }
}
