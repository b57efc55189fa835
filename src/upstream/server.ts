import type { Tunnel } from '../tunnel.js'
import type { ServerState, ServerStatus } from '../types.js'

/** How an upgrade ended, as counted by `sockgate_upgrades_total{result}`. */
export type UpgradeResult = 'switched' | 'refused' | 'failed' | 'aborted'

/** 2^31 - 1: the longest delay a Node timer supports; a longer one would fire at once. */
export const MAX_TIMER_MS = 2_147_483_647

/** Settings of one server after validation. */
export interface ServerSpec {
  /** Origin of the server, normalised (`http://127.0.0.1:5001`). */
  url: string
  /** The server's `name`, or null. */
  name: string | null
  weight: number
  backup: boolean
  down: boolean
  maxConns: number
}

/**
 * The live state of one upstream server: its settings, whether it may take
 * new work, and its counters. The pool and the balancers read it; the data
 * paths update its counters.
 */
export class UpstreamServer {
  /** Normalised origin, also the server's identity in events and status. */
  readonly url: string
  /** The configured `name`, or null. */
  readonly name: string | null
  /** What people read in metrics labels and on the status page: the name, or the URL when there is none. */
  readonly label: string
  readonly hostname: string
  readonly port: number
  /** Connect with TLS (`https:`/`wss:`). */
  readonly secure: boolean
  /** `host:port` as sent in `Host` when `headers.host` is `'upstream'`. */
  readonly hostHeader: string
  weight: number
  /** The weight the balancers use: `weight`, or less while slow start ramps the server up (nginx `effective_weight`). */
  effectiveWeight: number
  readonly backup: boolean
  readonly maxConns: number

  /** Set by configuration (`down: true`) or `pool.markDown()`; never picked. */
  adminDown: boolean
  /** Taking no new sessions; sticky sessions may continue. */
  draining = false
  /** Down according to active health checks. */
  healthDown = false
  /** Why health checks took it down. */
  healthReason: string | null = null
  /** Until this time (ms epoch) passive health keeps it out. */
  passiveUntil = 0
  /** Timestamps of recent failures, for `maxFails` within `failTimeout`. */
  recentFailures: number[] = []

  activeTunnels = 0
  activeRequests = 0
  requests = 0
  upgrades = 0
  failures = 0
  bytesIn = 0
  bytesOut = 0
  lastCheck: { at: number, ok: boolean, ms: number } | null = null
  /** Responses sent on behalf of this server, by status (its own answers, and the 502/504 sent after it failed). */
  readonly responsesByStatus = new Map<number, number>()
  /** Upgrades sent to it, by how they ended. */
  readonly upgradesByResult = new Map<UpgradeResult, number>()
  /** Failed attempts (what passive health counts), by reason (`'ECONNREFUSED'`, `'timeout'`). */
  readonly failuresByReason = new Map<string, number>()
  /** Its open tunnels: what a drain waits for and ends. */
  readonly tunnels = new Set<Tunnel>()
  /** The drain in progress, if any. */
  private drain: { promise: Promise<boolean>, settle: () => void } | undefined

  /** Smooth weighted round-robin state (nginx `current_weight`). */
  currentWeight = 0

  constructor (spec: ServerSpec) {
    const u = new URL(spec.url)
    this.secure = u.protocol === 'https:' || u.protocol === 'wss:'
    this.hostname = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname
    this.port = u.port === '' ? (this.secure ? 443 : 80) : Number(u.port)
    this.url = spec.url
    this.name = spec.name
    this.label = spec.name ?? spec.url
    this.hostHeader = u.host
    this.weight = spec.weight
    this.effectiveWeight = spec.weight
    this.backup = spec.backup
    this.maxConns = spec.maxConns
    this.adminDown = spec.down
  }

  /** Count a response sent on its behalf. */
  countResponse (status: number): void {
    bump(this.responsesByStatus, status)
  }

  /** Count how an upgrade to it ended. */
  countUpgrade (result: UpgradeResult): void {
    bump(this.upgradesByResult, result)
  }

  /** Count a failed attempt by its reason. */
  countFailure (reason: string): void {
    bump(this.failuresByReason, reason)
  }

  /** A tunnel to this server opened. */
  tunnelOpened (tunnel: Tunnel): void {
    this.tunnels.add(tunnel)
    this.activeTunnels++
    this.upgrades++
  }

  /** A tunnel to this server closed: its bytes are settled by then. Ends a drain once the last one is gone. */
  tunnelClosed (tunnel: Tunnel): void {
    if (!this.tunnels.delete(tunnel)) return
    this.activeTunnels--
    if (this.tunnels.size === 0) this.drain?.settle()
  }

  /**
   * Take no new sessions from now on (sticky ones continue); open tunnels
   * run for up to `timeout` ms and are then ended (reason `'drained'`).
   * Resolves with true once none is open. A drain in progress is returned
   * as it is.
   */
  startDrain (timeout: number): Promise<boolean> {
    // Checked before anything changes: a refused drain leaves the server as it was.
    if (!Number.isInteger(timeout) || timeout < 0 || timeout > MAX_TIMER_MS) {
      throw new RangeError(`drain timeout must be an integer from 0 to ${MAX_TIMER_MS} (ms), got ${String(timeout)}`)
    }
    this.draining = true
    if (this.drain !== undefined) return this.drain.promise
    if (this.tunnels.size === 0) return Promise.resolve(true)
    let settle!: () => void
    const promise = new Promise<boolean>((resolve) => {
      // The tunnels themselves keep the process alive while they are open.
      const timer = setTimeout(() => {
        for (const tunnel of this.tunnels) tunnel.destroy('drained')
      }, timeout).unref()
      settle = () => {
        clearTimeout(timer)
        this.drain = undefined
        resolve(true)
      }
    })
    this.drain = { promise, settle }
    return promise
  }

  /** Take new sessions again; a drain still waiting stops, leaving its tunnels open, and resolves. */
  stopDrain (): void {
    this.draining = false
    this.drain?.settle()
  }

  /** Open tunnels plus in-flight requests, what `maxConns` and `least-conn` count. */
  get active (): number {
    return this.activeTunnels + this.activeRequests
  }

  /** At `maxConns`. */
  get full (): boolean {
    return this.maxConns > 0 && this.active >= this.maxConns
  }

  /** Out because of passive failures at time `now`. */
  passiveDown (now: number): boolean {
    return this.passiveUntil > now
  }

  /** May take new work (a new session) now. */
  available (now: number): boolean {
    return !this.adminDown && !this.draining && !this.healthDown && !this.passiveDown(now) && !this.full
  }

  /** May take work of a session it already has (sticky), even while draining. */
  availableForSticky (now: number): boolean {
    return !this.adminDown && !this.healthDown && !this.passiveDown(now) && !this.full
  }

  /** State and reason as shown on the status page. */
  state (now: number): { state: ServerState, reason: string | null } {
    if (this.adminDown) return { state: 'down', reason: 'admin' }
    if (this.healthDown) return { state: 'down', reason: this.healthReason ?? 'health-check' }
    if (this.passiveDown(now)) return { state: 'down', reason: 'passive' }
    if (this.draining) return { state: 'draining', reason: 'draining' }
    return { state: 'up', reason: null }
  }

  /** Plain-data snapshot for `gateway.status()`. */
  snapshot (now: number): ServerStatus {
    const { state, reason } = this.state(now)
    return {
      url: this.url,
      name: this.name,
      state,
      reason,
      weight: this.weight,
      backup: this.backup,
      activeTunnels: this.activeTunnels,
      activeRequests: this.activeRequests,
      requests: this.requests,
      upgrades: this.upgrades,
      failures: this.failures,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      lastCheck: this.lastCheck,
    }
  }
}

function bump<K> (map: Map<K, number>, key: K): void {
  map.set(key, (map.get(key) ?? 0) + 1)
}
