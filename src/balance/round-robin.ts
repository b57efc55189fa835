import type { Balancer } from './types.js'
import type { UpstreamServer } from '../upstream/server.js'

/**
 * One step of smooth weighted round-robin among the servers `include` accepts:
 * each of them gains its weight in `currentWeight`, the largest wins and pays
 * back the total. Exported so least-conn can break its ties with the same
 * state, the way nginx's least_conn does, instead of keeping a second copy.
 *
 * Servers left out keep their `currentWeight` untouched, so a server that was
 * briefly unusable rejoins the rotation where it left it.
 */
export function pickSmoothWeighted (
  servers: readonly UpstreamServer[],
  include: (s: UpstreamServer) => boolean
): UpstreamServer | undefined {
  let best: UpstreamServer | undefined
  let total = 0
  for (const s of servers) {
    if (!include(s)) continue
    s.currentWeight += s.effectiveWeight
    total += s.effectiveWeight
    if (best === undefined || s.currentWeight > best.currentWeight) best = s
  }
  if (best !== undefined) best.currentWeight -= total
  return best
}

/**
 * Smooth weighted round-robin, nginx's algorithm: each pick adds every usable
 * server's weight to its current weight, takes the largest, and subtracts the
 * total from it. Weights 5:1:1 give a a b a c a a rather than a a a a a b c.
 */
export function createRoundRobin (): Balancer {
  return {
    pick (servers, usable) {
      return pickSmoothWeighted(servers, usable)
    },
  }
}
