import type { UpstreamServer } from '../upstream/server.js'

/** The share of its weight a server starts from when it comes back or joins. */
export const SLOW_START_FLOOR = 0.1

/**
 * Slow start for one pool (nginx plus `slow_start`, HAProxy `slowstart`): a
 * server that comes back up or joins starts at a tenth of its weight and
 * grows linearly to all of it over `window` ms, so it does not take a full
 * share of new sessions the moment it is back. What the balancers read is
 * `server.effectiveWeight`; this keeps it up to date, on the pool's picks
 * and only while some server ramps, so a pool without slow start (or with
 * every server at full weight) pays nothing per pick.
 */
export class SlowStart {
  readonly #window: number
  /** Servers ramping up, with the time (ms epoch) each ramp begins; it may lie ahead (a server still out). */
  readonly #ramps = new Map<UpstreamServer, number>()

  constructor (window: number) {
    this.#window = window
  }

  /** True while some server is below its full weight. */
  get ramping (): boolean {
    return this.#ramps.size !== 0
  }

  /** `server` takes new work again from `at` (ms epoch): it ramps from a tenth of its weight from then on. */
  begin (server: UpstreamServer, at: number): void {
    this.#ramps.set(server, at)
    server.effectiveWeight = server.weight * SLOW_START_FLOOR
  }

  /** Bring every ramping server's `effectiveWeight` to what it is at `now`; a finished ramp leaves the table. */
  advance (now: number): void {
    for (const [server, since] of this.#ramps) {
      const done = (now - since) / this.#window
      if (done >= 1) {
        server.effectiveWeight = server.weight
        this.#ramps.delete(server)
      } else {
        server.effectiveWeight = server.weight * (SLOW_START_FLOOR + (1 - SLOW_START_FLOOR) * Math.max(0, done))
      }
    }
  }

  /** `server` left the pool. */
  forget (server: UpstreamServer): void {
    this.#ramps.delete(server)
  }
}
