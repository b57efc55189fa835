import type { Balancer } from './types.js'
import type { UpstreamServer } from '../upstream/server.js'

/** Index in `list` of the server that a draw of `r` in `[0, total)` lands on, skipping `skip`. */
function draw (list: readonly UpstreamServer[], total: number, r: number, skip: number): number {
  let acc = 0
  let lastIncluded = -1
  for (let i = 0; i < list.length; i++) {
    if (i === skip) continue
    lastIncluded = i
    acc += list[i]!.effectiveWeight
    if (r < acc) return i
  }
  // Rounding in the running sum (or weights of 0) can leave r at or past the
  // end; the last candidate takes it rather than nobody.
  return lastIncluded
}

/**
 * Power of two choices (nginx `random two least_conn`): draw two different
 * usable servers, each with probability proportional to its weight, and send
 * the request to the one with fewer active connections per unit of weight
 * (the first drawn on a tie).
 *
 * Unlike least-conn it needs no shared ordering, so several gateway processes
 * in front of the same servers do not all pile onto the one that looks least
 * loaded, and it still avoids the worst server with high probability.
 *
 * `random` returns a number in `[0, 1)`; tests pass a seeded one.
 */
export function createRandomTwo (random: () => number = Math.random): Balancer {
  return {
    pick (servers, usable) {
      const list: UpstreamServer[] = []
      let total = 0
      for (const s of servers) {
        if (!usable(s)) continue
        list.push(s)
        total += s.effectiveWeight
      }
      if (list.length <= 1) return list[0]

      const i = draw(list, total, random() * total, -1)
      const a = list[i]!
      const j = draw(list, total - a.effectiveWeight, random() * (total - a.effectiveWeight), i)
      const b = list[j]!
      return b.active * a.effectiveWeight < a.active * b.effectiveWeight ? b : a
    },
  }
}
