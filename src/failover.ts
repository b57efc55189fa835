import { NoUpstreamError, UpstreamConnectError, UpstreamTimeoutError } from './errors.js'
import { failureReason } from './health.js'
import type { PickContext } from './balance/types.js'
import type { Pool } from './upstream/pool.js'
import type { UpstreamServer } from './upstream/server.js'

/** A failure of the server itself (refused, reset, timed out), as passive health counts it. */
export type UpstreamFailure = UpstreamConnectError | UpstreamTimeoutError

/**
 * Failures of an upstream that say nothing about the request: another server
 * may well succeed. A server that answered, however badly (an
 * `UpstreamProtocolError`), is not among them: the same request would get
 * the same answer elsewhere, and a client must not be able to take servers
 * out by asking for bad answers.
 */
export function isUpstreamFailure (err: unknown): err is UpstreamFailure {
  return err instanceof UpstreamConnectError || err instanceof UpstreamTimeoutError
}

/** Methods that may be repeated with the effect of one request (RFC 9110 §9.2.2), so safe to send to a second server. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

/**
 * Whether a request that failed with `err` may be sent to the next server:
 * always when none of its bytes left the gateway (refused, connect timeout);
 * once they did, the server may have acted on it, so only an idempotent
 * method is sent again, unless `retryNonIdempotent` allows every method
 * (nginx's rule since 1.9.13, and its `proxy_next_upstream non_idempotent`).
 */
export function mayReplay (method: string, err: UpstreamFailure, retryNonIdempotent: boolean): boolean {
  return !err.requestSent || retryNonIdempotent || IDEMPOTENT.has(method)
}

/**
 * Run `attempt` against servers of `pool` until one succeeds. A connect
 * error, reset or timeout counts against the server (passive health) and
 * moves on to the next server, up to the pool's `tries` within its
 * `failoverTimeout`, while `canRetry()` allows it (nothing has reached the
 * client, the body can be sent again) and {@link mayReplay} does for the
 * request's method (an upgrade is a GET). Any other error ends the loop at
 * once. Rejects with the last failure, or `NoUpstreamError` when no server
 * could be picked at all.
 */
export async function withFailover<T> (pool: Pool, ctx: PickContext, canRetry: () => boolean,
  attempt: (server: UpstreamServer) => Promise<T>): Promise<T> {
  const tried = new Set<UpstreamServer>()
  const deadline = ctx.now + pool.spec.failoverTimeout
  let last: UpstreamFailure | undefined
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
      server.countFailure(failureReason(err))
      last = err
      if (!canRetry() || !mayReplay(ctx.req.method ?? '', err, pool.spec.retryNonIdempotent) || Date.now() >= deadline) break
    }
  }
  throw last ?? new NoUpstreamError(pool.name)
}
