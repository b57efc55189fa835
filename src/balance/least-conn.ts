import { pickSmoothWeighted } from './round-robin.js'
import type { Balancer } from './types.js'
import type { UpstreamServer } from '../upstream/server.js'

/**
 * Least connections, weighted (nginx `least_conn`): the usable server with the
 * fewest open tunnels plus in-flight requests per unit of weight. Loads are
 * compared by cross-multiplying (`a.active * b.weight` against
 * `b.active * a.weight`) so no division rounds two different loads together.
 *
 * Ties are common (every server idle at start, or after a burst closes), and
 * taking the first tied server each time would send all of them to one node;
 * so tied servers are settled by smooth weighted round-robin among themselves.
 */
export function createLeastConn (): Balancer {
  return {
    pick (servers, usable) {
      let best: UpstreamServer | undefined
      let tied = 0
      for (const s of servers) {
        if (!usable(s)) continue
        if (best === undefined) {
          best = s
          tied = 1
          continue
        }
        const cmp = s.active * best.effectiveWeight - best.active * s.effectiveWeight
        if (cmp < 0) {
          best = s
          tied = 1
        } else if (cmp === 0) {
          tied++
        }
      }
      // A single winner needs no round-robin bookkeeping, as in nginx.
      if (best === undefined || tied === 1) return best
      const b = best
      return pickSmoothWeighted(servers, (s) => usable(s) && s.active * b.effectiveWeight === b.active * s.effectiveWeight)
    },
  }
}
