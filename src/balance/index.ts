import { createHashBalancer } from './consistent-hash.js'
import { createIpHash, ipHashKey } from './ip-hash.js'
import { createLeastConn } from './least-conn.js'
import { createRandomTwo } from './random-two.js'
import { createRoundRobin } from './round-robin.js'
import type { Balancer, PickContext } from './types.js'
import type { BalanceOption } from '../types.js'

export type { Balancer, PickContext } from './types.js'

/**
 * The balancer for a pool's `balance` option. Each call returns a new
 * balancer; a pool keeps one for its lifetime.
 *
 * `{ hash }` runs the user's key function on every pick. If it throws or
 * returns something other than a string, that pick falls back to the
 * client's address (ip-hash's key): a bug in user code costs stickiness for
 * that request, never the request itself, since `pick` must not throw.
 */
export function createBalancer (option: BalanceOption): Balancer {
  switch (option) {
    case 'round-robin': return createRoundRobin()
    case 'least-conn': return createLeastConn()
    case 'ip-hash': return createIpHash()
    case 'random-two': return createRandomTwo()
  }
  const hash = option.hash
  return createHashBalancer((ctx: PickContext) => {
    try {
      const key: unknown = hash(ctx.req)
      if (typeof key === 'string') return key
    } catch {
      // Fall through to the address; reporting is the caller's business.
    }
    return ipHashKey(ctx.clientAddress ?? '')
  })
}
