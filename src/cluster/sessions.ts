/**
 * The learned engine.io sessions of a sockgate/cluster box, one table for
 * every worker (as nginx's workers share one `sticky learn` zone).
 * node:cluster hands each new connection to any worker, and a polling
 * client opens a connection per request: a session learnt by one worker
 * must be known to the next. The primary keeps the table; a worker reaches
 * it as a shared store (`SessionStore`, behind `SharedSessions`: looked up
 * only when the worker's own table misses, with its bounded wait and its one
 * report).
 */
import cluster from 'node:cluster'
import type { SessionStore } from '../balance/session-store.js'
import { SessionTable } from '../balance/sticky.js'
import { isClusterMessage, isManagedWorker, type PrimaryMessage, type WorkerMessage } from './messages.js'

type SessionMessage = Extract<WorkerMessage, { type: 'sid-get' | 'sid-set' | 'sid-del' | 'sid-touch' }>

/**
 * The primary's side: the box's table, keyed by the store key (pool and
 * sid), bounded and forgetting idle sessions like a worker's own. It lives
 * as long as the primary, so a replaced worker finds the sessions of the
 * one before it. Entries expire after the table's idle time, which is every
 * pool's (`DEFAULT_SESSION_IDLE_MS`): the workers' ttl is not sent.
 */
export class BoxSessions {
  readonly #table = new SessionTable<string>()

  /** Apply a worker's message; for a `sid-get`, the answer to send back. */
  handle (msg: SessionMessage): Extract<PrimaryMessage, { type: 'sid' }> | undefined {
    switch (msg.type) {
      case 'sid-get':
        return { sockgate: 'cluster', type: 'sid', id: msg.id, value: this.#table.get(msg.key) ?? null }
      case 'sid-set':
        this.#table.set(msg.key, msg.value)
        return undefined
      case 'sid-del':
        this.#table.delete(msg.key)
        return undefined
      case 'sid-touch':
        // A read counts as activity: that is the push of the expiry.
        this.#table.get(msg.key)
        return undefined
    }
  }
}

let workerStore: SessionStore | undefined

/**
 * In a worker forked by our primary, the store every pool with
 * `sticky.engineIo` and no `store` of its own uses: one per process,
 * created on first use. Null anywhere else (a single process, PM2's
 * cluster mode: no primary of ours keeps a table), at the cost of one check.
 */
export function boxSessionStore (): SessionStore | null {
  if (!cluster.isWorker || !isManagedWorker()) return null
  workerStore ??= workerSessionStore()
  return workerStore
}

/** A {@link SessionStore} whose commands are messages to the primary; a lookup waits for the primary's `sid` answer. */
function workerSessionStore (): SessionStore {
  const waiting = new Map<number, (url: string | null) => void>()
  let nextId = 1
  process.on('message', (msg: unknown) => {
    if (!isClusterMessage<PrimaryMessage>(msg) || msg.type !== 'sid') return
    const resolve = waiting.get(msg.id)
    waiting.delete(msg.id)
    resolve?.(msg.value)
  })
  // Lookups in flight when the primary goes answer "unknown"; the worker exits soon after. While the primary is
  // slow, SharedSessions caps what waits here (MAX_PENDING_LOOKUPS), and answers each lookup in time by itself.
  process.once('disconnect', () => {
    for (const resolve of waiting.values()) resolve(null)
    waiting.clear()
  })
  const post = (msg: WorkerMessage): Promise<void> => new Promise((resolve, reject) => {
    process.send!(msg, undefined, undefined, (err: Error | null) => { if (err === null) resolve(); else reject(err) })
  })
  return {
    kind: 'cluster',
    ready: () => process.connected,
    get: (key) => new Promise((resolve, reject) => {
      const id = nextId++
      waiting.set(id, resolve)
      post({ sockgate: 'cluster', type: 'sid-get', id, key }).catch((err: unknown) => {
        waiting.delete(id)
        reject(err)
      })
    }),
    set: (key, value) => post({ sockgate: 'cluster', type: 'sid-set', key, value }),
    del: (key) => post({ sockgate: 'cluster', type: 'sid-del', key }),
    expire: (key) => post({ sockgate: 'cluster', type: 'sid-touch', key }),
  }
}
