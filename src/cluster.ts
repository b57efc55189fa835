/**
 * sockgate/cluster: one gateway app on every core. `startCluster()` forks N
 * workers that each run `start()` and listen on the same port (node:cluster
 * hands them the connections), answers the status page and metrics of any
 * worker for the whole box, replaces workers that die, and drains them all
 * on SIGTERM/SIGINT. See docs/cluster.md.
 */
import cluster from 'node:cluster'
import { availableParallelism } from 'node:os'
import type { Gateway } from './gateway.js'
import { normalizeClusterOptions } from './options.js'
import type { GatewayStatus, Logger } from './types.js'
import { isManagedWorker } from './cluster/messages.js'
import { Primary, type ClusterPrimary } from './cluster/primary.js'
import { runForeignWorker, runManagedWorker, type ClusterApp } from './cluster/worker.js'

export type { ClusterApp, ClusterPrimary }

/** Options of `startCluster()`. */
export interface ClusterOptions<T extends ClusterApp> {
  /** Worker processes. Default: `os.availableParallelism()`. */
  workers?: number
  /**
   * Runs in each worker: build the app, make it listen, return `{ gateway, server }` (either may be an
   * array). May be async. Default: none (required).
   */
  start: () => T | Promise<T>
  /** On SIGTERM/SIGINT, milliseconds open tunnels may run on before they are ended. Default: `10000`. */
  drain?: number
  /** Where the primary writes worker exits, restarts and shutdowns. Default: lines on stderr. */
  logger?: Logger
}

/**
 * Run `start()` in `workers` processes sharing one port. In the primary,
 * resolves once every worker listens, with `{ pids, close() }`; rejects
 * (every worker stopped) when a worker's `start()` fails, with that
 * failure's code and message. In a worker, resolves with what `start()`
 * returned. In a worker of another primary (PM2's cluster mode) it runs
 * `start()` and drains on SIGINT/SIGTERM, and the page answers for the
 * process alone.
 */
export async function startCluster<T extends ClusterApp> (options: ClusterOptions<T>): Promise<ClusterPrimary | T> {
  const opts = normalizeClusterOptions(options, availableParallelism())
  if (cluster.isPrimary) return await new Primary(opts).start()
  if (isManagedWorker()) return await runManagedWorker(opts.start)
  return await runForeignWorker(opts.start, opts.drain)
}

/**
 * The status of the whole box (as `gateway.status()`, every worker's
 * figures merged, with `cluster.workers` naming those counted) for a gateway
 * `start()` returned; outside sockgate/cluster, the gateway's own.
 */
export function clusterStatus (gateway: Gateway): Promise<GatewayStatus> {
  return gateway.statusProvider?.status() ?? Promise.resolve(gateway.status())
}

/** The metrics text of the whole box (as `gateway.metrics()`, summed); outside sockgate/cluster, the gateway's own. */
export function clusterMetrics (gateway: Gateway): Promise<string> {
  return gateway.statusProvider?.metrics() ?? Promise.resolve(gateway.metrics())
}
