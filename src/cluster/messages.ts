/**
 * The IPC messages between a sockgate/cluster primary and its workers. Each
 * carries `sockgate: 'cluster'` so that the app's own messages (and
 * node:cluster's) pass by untouched.
 */
import type { GatewayStatus } from '../types.js'

/** Set in a worker's environment by the primary: the worker is ours, and a primary answers it. */
export const WORKER_ENV = 'SOCKGATE_CLUSTER_WORKER'

/** Which figures of which gateway (its place in what `start()` returned). */
export interface FiguresQuery {
  gateway: number
  what: 'status' | 'metrics'
}

/** What a worker's `start()` failure looks like on the wire. */
export interface RemoteError {
  name: string
  message: string
  code?: string
  statusCode?: number
  stack?: string
}

export type WorkerMessage =
  | { sockgate: 'cluster', type: 'ready' }
  | { sockgate: 'cluster', type: 'start-failed', error: RemoteError }
  /** A worker's status page asks for the whole box. */
  | { sockgate: 'cluster', type: 'ask', id: number, query: FiguresQuery }
  /** A worker's own figures, for a gathering of the primary's. */
  | { sockgate: 'cluster', type: 'part', id: number, value: GatewayStatus | string | null }

export type PrimaryMessage =
  /** Send your own figures. */
  | { sockgate: 'cluster', type: 'gather', id: number, query: FiguresQuery }
  /** The whole box's figures, for an `ask`. */
  | { sockgate: 'cluster', type: 'answer', id: number, value: GatewayStatus | string }
  | { sockgate: 'cluster', type: 'shutdown', drain: number }

export function isClusterMessage<T extends WorkerMessage | PrimaryMessage> (msg: unknown): msg is T {
  return typeof msg === 'object' && msg !== null && (msg as { sockgate?: unknown }).sockgate === 'cluster'
}

/** How long the primary waits for every worker's figures before it answers with those it has. */
export const GATHER_TIMEOUT_MS = 1_000
