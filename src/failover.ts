import { NoUpstreamError, SockgateError, UpstreamConnectError, UpstreamTimeoutError } from './errors.js'
import { countFailure } from './metrics.js'
import type { PickContext } from './balance/types.js'
import type { Pool } from './upstream/pool.js'
import type { UpstreamServer } from './upstream/server.js'

/** Failures of an upstream that say nothing about the request: another server may well succeed. */
export function isUpstreamFailure (err: unknown): err is SockgateError {
  return err instanceof UpstreamConnectError || err instanceof UpstreamTimeoutError
}

/**
 * Run `attempt` against servers of `pool` until one succeeds. A connect
 * error, reset or timeout counts against the server (passive health) and,
 * while `canRetry()` allows it (nothing has reached the client, the body can
 * be sent again), moves on to the next server, up to the pool's `tries`
 * within its `failoverTimeout`. Any other error ends the loop at once.
 * Rejects with the last failure, or `NoUpstreamError` when no server could
 * be picked at all.
 */
export async function withFailover<T> (pool: Pool, ctx: PickContext, canRetry: () => boolean,
  attempt: (server: UpstreamServer) => Promise<T>): Promise<T> {
  const tried = new Set<UpstreamServer>()
  const deadline = ctx.now + pool.spec.failoverTimeout
  let last: SockgateError | undefined
  while (tried.size < pool.spec.tries) {
    const server = pool.pick(tried.size === 0 ? ctx : { ...ctx, now: Date.now() }, tried)
    if (server === undefined) break
    tried.add(server)
    try {
      const result = await attempt(server)
      pool.recordSuccess(server)
      return result
    } catch (err) {
      if (!isUpstreamFailure(err)) throw err
      pool.recordFailure(server, Date.now())
      countFailure(server, err)
      last = err
      if (!canRetry() || Date.now() >= deadline) break
    }
  }
  throw last ?? new NoUpstreamError(pool.name)
}
