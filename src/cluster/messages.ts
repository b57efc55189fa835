/**
 * The IPC messages between a sockgate/cluster primary and its workers. Each
 * carries `sockgate: 'cluster'` so that the app's own messages (and
 * node:cluster's) pass by untouched.
 */
import type { GatewayStatus } from '../types.js'

/** Set in a worker's environment by the primary: the worker is ours, and a primary answers it. */
export const WORKER_ENV = 'SOCKGATE_CLUSTER_WORKER'

/** This process is a worker a sockgate/cluster primary forked, with the IPC channel to it (not PM2's, not a plain process). */
export function isManagedWorker (): boolean {
  return process.env[WORKER_ENV] === '1' && process.send !== undefined
}

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
  /** The box's learned engine.io sessions (src/cluster/sessions.ts): which server holds the session under `key`. */
  | { sockgate: 'cluster', type: 'sid-get', id: number, key: string }
  | { sockgate: 'cluster', type: 'sid-set', key: string, value: string }
  | { sockgate: 'cluster', type: 'sid-del', key: string }
  /** The session is still in use: it lives another idle time. */
  | { sockgate: 'cluster', type: 'sid-touch', key: string }

export type PrimaryMessage =
  /** Send your own figures. */
  | { sockgate: 'cluster', type: 'gather', id: number, query: FiguresQuery }
  /** The whole box's figures, for an `ask`. */
  | { sockgate: 'cluster', type: 'answer', id: number, value: GatewayStatus | string }
  | { sockgate: 'cluster', type: 'shutdown', drain: number }
  /** The answer to a `sid-get`: the server's URL, or null when the box knows no such session. */
  | { sockgate: 'cluster', type: 'sid', id: number, value: string | null }

export function isClusterMessage<T extends WorkerMessage | PrimaryMessage> (msg: unknown): msg is T {
  return typeof msg === 'object' && msg !== null && (msg as { sockgate?: unknown }).sockgate === 'cluster'
}

/** How long the primary waits for every worker's figures before it answers with those it has. */
export const GATHER_TIMEOUT_MS = 1_000
