import type { Tunnel } from './tunnel.js'
import type { Pool } from './upstream/pool.js'
import type { UpstreamServer } from './upstream/server.js'

/** Options of `pool.drain()`. */
export interface DrainOptions {
  /** Milliseconds the server's open tunnels may keep running before they are ended. Default: `10000`. */
  timeout?: number
}

/** How long `pool.drain()` lets tunnels run when no `timeout` is given. */
export const DEFAULT_DRAIN_TIMEOUT = 10_000

/** Where a pool's tunnels live (the gateway) and how to hear that one closed. */
export interface TunnelSource {
  readonly tunnels: Iterable<Tunnel>
  on (event: 'tunnel:close', listener: (...args: never[]) => void): unknown
  off (event: 'tunnel:close', listener: (...args: never[]) => void): unknown
}

interface Draining {
  promise: Promise<boolean>
  /** Stop waiting: clear the deadline and resolve. */
  settle: () => void
}

const sources = new WeakMap<Pool, TunnelSource>()
const draining = new WeakMap<UpstreamServer, Draining>()

/** Let `pool.drain()` find and end the tunnels of the pool's servers. Called by the gateway for each pool. */
export function registerTunnelSource (pool: Pool, source: TunnelSource): void {
  sources.set(pool, source)
}

/**
 * Drain one server of `pool`: it takes no new sessions at once
 * (`server.draining`; sticky sessions it already has continue), its open
 * tunnels run for up to `timeout` ms and are then ended (`tunnel:close`
 * reason `'drained'`). Resolves with true once the server has no open
 * tunnels, or with false when no server of the pool has that URL. Draining
 * a server that is already draining returns the same promise.
 */
export function drainServer (pool: Pool, url: string, options: DrainOptions = {}): Promise<boolean> {
  const server = pool.find(url)
  if (server === undefined) return Promise.resolve(false)
  server.draining = true
  const existing = draining.get(server)
  if (existing !== undefined) return existing.promise
  const timeout = options.timeout ?? DEFAULT_DRAIN_TIMEOUT
  // 2^31 - 1 is the longest delay a Node timer supports; a longer one would fire at once.
  if (!Number.isInteger(timeout) || timeout < 0 || timeout > 2_147_483_647) {
    throw new RangeError(`drain timeout must be an integer from 0 to 2147483647 (ms), got ${String(timeout)}`)
  }
  const source = sources.get(pool)
  if (server.activeTunnels === 0 || source === undefined) return Promise.resolve(true)

  let timer: NodeJS.Timeout | undefined
  let settle!: () => void
  const promise = new Promise<boolean>((resolve) => {
    const check = (): void => {
      if (server.activeTunnels === 0) settle()
    }
    settle = () => {
      clearTimeout(timer)
      source.off('tunnel:close', check)
      draining.delete(server)
      resolve(true)
    }
    source.on('tunnel:close', check)
    timer = setTimeout(() => {
      for (const tunnel of source.tunnels) if (tunnel.server === server) tunnel.destroy('drained')
    }, timeout)
    // The tunnels themselves keep the process alive while they are open.
    timer.unref()
  })
  draining.set(server, { promise, settle })
  return promise
}

/**
 * Let a drained server take new sessions again (after a restart, say). A
 * drain still waiting is stopped: its tunnels are left open and its promise
 * resolves. Returns false when no server of the pool has that URL.
 */
export function undrainServer (pool: Pool, url: string): boolean {
  const server = pool.find(url)
  if (server === undefined) return false
  server.draining = false
  draining.get(server)?.settle()
  return true
}
