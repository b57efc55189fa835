/**
 * `limits.perClient`: what one client may have in flight and spend, nginx's
 * `limit_conn` and `limit_req` in one table keyed by the client address
 * (after `trustProxy`). Each client's state is a few numbers, brought up to
 * date when the client comes back rather than by a timer of its own; one
 * shared, unref'd sweep forgets clients that have been idle long enough to
 * be indistinguishable from new ones, and the table never holds more than
 * `maxClients`, so a flood of spoofed addresses cannot grow memory.
 */
import { RateLimitedError, type ClientLimitName } from './errors.js'
import { familyText, labels } from './metrics.js'
import type { NormalizedPerClient } from './options.js'
import { ipHashKey } from './balance/ip-hash.js'
import type { GatewayStatus } from './types.js'

/** Refusals of one client after the first one reported are only counted, for this long. */
export const REPORT_QUIET_MS = 60_000

/** How fast a bucket drains, and how much it holds: what may come at once. */
interface Rate {
  perMs: number
  capacity: number
}

/**
 * A leaky bucket as nginx's limit_req keeps it (its "excess"): each request
 * adds one, the level drains at the rate, and a request that would take it
 * past the capacity is refused without being counted.
 */
class Bucket {
  level = 0
  at = 0

  /** Spend one: 0 when it fitted, else the milliseconds until it would. */
  spend (rate: Rate, now: number): number {
    const level = Math.max(0, this.level - (now - this.at) * rate.perMs)
    const over = level + 1 - rate.capacity
    if (over > 0) return over / rate.perMs
    this.level = level + 1
    this.at = now
    return 0
  }
}

/** One client's work in flight and what it has spent. */
export class ClientState {
  /** HTTP requests in flight, upgrades in their handshake and open tunnels. */
  active = 0
  lastSeen: number
  /** Until when further refusals go unreported (counted only). */
  quietUntil = 0
  /**
   * Seen again since the eviction hand last passed: spared once (CLOCK, an
   * approximation of least recently used). A client seen only once starts
   * without it, so a flood of one-time addresses goes before clients that
   * keep coming back.
   */
  recent = false
  readonly requests: Bucket | null
  readonly upgrades: Bucket | null

  constructor (spec: NormalizedPerClient, now: number) {
    this.lastSeen = now
    this.requests = spec.requestsPerSecond === null ? null : new Bucket()
    this.upgrades = spec.upgradesPerMinute === null ? null : new Bucket()
  }
}

/** A refusal, and whether it is the first of its client in the quiet window (so worth reporting). */
export interface Refusal {
  error: RateLimitedError
  report: boolean
}

/** The per-client table of one gateway. */
export class ClientLimits {
  private readonly spec: NormalizedPerClient
  private readonly requestRate: Rate | null
  private readonly upgradeRate: Rate | null
  private readonly clients = new Map<string, ClientState>()
  /**
   * Where eviction looks next, kept between calls. A fresh iterator would
   * start at the table's first slot and step over every entry deleted since
   * V8 last compacted it, which a flood makes thousands; a kept one goes on
   * from where it was, so each eviction costs a few steps.
   */
  private hand: Iterator<[string, ClientState]> | undefined
  /** Entries with work in flight, which may not be forgotten. */
  private busy = 0
  private readonly refusedBy: Record<ClientLimitName, number> = { connections: 0, requestsPerSecond: 0, upgradesPerMinute: 0, maxClients: 0 }
  /** For refusals with no client entry (the table is full). */
  private tableQuietUntil = 0
  /** Idle time after which forgetting a client changes nothing: its buckets have drained and its quiet window is over. */
  readonly expireMs: number
  private readonly sweeper: NodeJS.Timeout

  constructor (spec: NormalizedPerClient) {
    this.spec = spec
    this.requestRate = spec.requestsPerSecond === null ? null : { perMs: spec.requestsPerSecond / 1000, capacity: spec.burst + 1 }
    this.upgradeRate = spec.upgradesPerMinute === null ? null : { perMs: spec.upgradesPerMinute / 60_000, capacity: spec.upgradesPerMinute }
    const drainMs = (rate: Rate | null): number => rate === null ? 0 : Math.ceil(rate.capacity / rate.perMs)
    this.expireMs = Math.max(REPORT_QUIET_MS, drainMs(this.requestRate), drainMs(this.upgradeRate))
    this.sweeper = setInterval(() => this.sweep(Date.now()), this.expireMs).unref()
  }

  /**
   * Let one HTTP request or upgrade of `clientAddress` start: its client's
   * state, with a slot taken (give it back with {@link release} when the
   * work ends), or the refusal. The connection cap is checked first, so a
   * request refused for it spends none of the client's rate.
   */
  admit (kind: 'http' | 'upgrade', clientAddress: string, now: number): ClientState | Refusal {
    // One client per IPv4 address, and per /64 for IPv6 (a host rotates addresses inside its /64), as ip-hash has it.
    const key = ipHashKey(clientAddress)
    let state = this.clients.get(key)
    if (state === undefined) {
      if (this.clients.size >= this.spec.maxClients && !this.evictOne()) {
        return this.refuse(null, clientAddress, 'maxClients', String(this.spec.maxClients), 1000, now)
      }
      state = new ClientState(this.spec, now)
      this.clients.set(key, state)
    } else {
      state.recent = true
    }
    state.lastSeen = now
    const { connections } = this.spec
    // How long until a slot frees is unknown: the client is asked to come back in a second.
    if (connections !== null && state.active >= connections) return this.refuse(state, clientAddress, 'connections', String(connections), 1000, now)
    const bucket = kind === 'http' ? state.requests : state.upgrades
    if (bucket !== null) {
      const rate = (kind === 'http' ? this.requestRate : this.upgradeRate)!
      const waitMs = bucket.spend(rate, now)
      if (waitMs > 0) {
        return kind === 'http'
          ? this.refuse(state, clientAddress, 'requestsPerSecond', `${this.spec.requestsPerSecond!} per second, burst ${this.spec.burst}`, waitMs, now)
          : this.refuse(state, clientAddress, 'upgradesPerMinute', `${this.spec.upgradesPerMinute!} per minute`, waitMs, now)
      }
    }
    if (state.active++ === 0) this.busy++
    return state
  }

  /** The work `admit()` let start has ended (finished, failed or aborted): its slot is free. */
  release (state: ClientState, now: number): void {
    if (--state.active === 0) this.busy--
    state.lastSeen = now
  }

  private refuse (state: ClientState | null, clientAddress: string, limit: ClientLimitName, rule: string, waitMs: number, now: number): Refusal {
    this.refusedBy[limit]++
    const quietUntil = state === null ? this.tableQuietUntil : state.quietUntil
    const report = now >= quietUntil
    if (report) {
      if (state === null) this.tableQuietUntil = now + REPORT_QUIET_MS
      else state.quietUntil = now + REPORT_QUIET_MS
    }
    // Retry-After is in whole seconds: rounded up, a retry after it passes (unless the client spends meanwhile).
    return { error: new RateLimitedError(clientAddress, limit, rule, Math.max(1, Math.ceil(waitMs / 1000))), report }
  }

  /**
   * Make room for a new client: forget one with nothing in flight that has
   * not been seen lately, as nginx forgets its least recently used state
   * when its zone is full. The hand goes round the table (CLOCK): a client
   * seen since the hand last passed is spared, and loses the mark; one with
   * work in flight is always spared, its slots are given back to it. Each
   * mark the hand clears was set by an admission, so an eviction costs a
   * few steps on average. False at once when every client has work in
   * flight.
   */
  private evictOne (): boolean {
    if (this.busy >= this.clients.size) return false
    // One round clears every mark; an idle client is met in the next one at the latest.
    for (let steps = 2 * this.clients.size + 1; steps > 0; steps--) {
      let next = this.hand?.next()
      if (next === undefined || next.done === true) {
        this.hand = this.clients.entries()
        next = this.hand.next()
      }
      const [key, state] = next.value as [string, ClientState]
      if (state.active > 0) continue
      if (state.recent) {
        state.recent = false
        continue
      }
      this.clients.delete(key)
      return true
    }
    return false
  }

  /** Forget every client idle for `expireMs`: it would be admitted exactly as a new one. @internal Exposed for tests. */
  sweep (now: number): void {
    for (const [key, state] of this.clients) {
      if (state.active === 0 && now - state.lastSeen >= this.expireMs) this.clients.delete(key)
    }
  }

  /** What `gateway.status()` shows of the table. */
  snapshot (): NonNullable<GatewayStatus['perClient']> {
    return { clients: this.clients.size, refused: { ...this.refusedBy } }
  }

  /** The table's families in the Prometheus text format: refusals by limit, and clients tracked. */
  metrics (): string {
    const limited = Object.entries(this.refusedBy).map(([limit, n]) => `sockgate_limited_total${labels({ limit })} ${n}`)
    return familyText({ name: 'sockgate_limited_total', type: 'counter', help: 'Requests and upgrades answered 429 by limits.perClient, by the setting that refused them.', samples: limited }) +
      familyText({ name: 'sockgate_limit_clients', type: 'gauge', help: 'Clients in the per-client limits table.', samples: [`sockgate_limit_clients ${this.clients.size}`] })
  }

  /** Stop the sweep (the gateway closed). */
  stop (): void {
    clearInterval(this.sweeper)
  }
}
