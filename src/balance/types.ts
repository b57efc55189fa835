import type { IncomingMessage } from 'node:http'
import type { UpstreamServer } from '../upstream/server.js'

/** What a balancer may look at when it picks a server for one request. */
export interface PickContext {
  req: IncomingMessage
  /** The client's address after `trustProxy` (the right-most untrusted one). */
  clientAddress: string
  /** Time of the pick, ms epoch. */
  now: number
}

/**
 * One balancing method. `servers` is the whole tier (primaries or backups)
 * in configuration order, so hash-based methods keep their mapping stable;
 * `usable` says which of them may take the request now.
 */
export interface Balancer {
  pick (servers: readonly UpstreamServer[], usable: (s: UpstreamServer) => boolean, ctx: PickContext): UpstreamServer | undefined
}
