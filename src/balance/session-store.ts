/**
 * The engine.io session table shared by every gateway through Redis
 * (`sticky.engineIo.store`): the client libraries it speaks to (ioredis and
 * node-redis v4/v5, told apart by their shape) and the rules that keep a slow
 * or absent Redis from costing more than a balanced request.
 */
import type { IncomingMessage } from 'node:http'
import { StickyStoreError } from '../errors.js'

/**
 * Longest wait for the store's answer to a lookup before the request is
 * balanced as if it had no pin. A Redis on the same network answers in about
 * a millisecond; 150 ms leaves room for a busy one while a Socket.IO request
 * (a long-poll waits up to 25 s anyway) hardly notices.
 */
export const STORE_WAIT_MS = 150
/** Lookups waiting for the store at most; past this, requests are balanced at once (memory stays bounded while Redis is slow). */
export const MAX_PENDING_LOOKUPS = 1024
/** Longest sid looked up: engine.io's are 20 characters and named ones under 90; anything longer is not a session of ours. */
const MAX_SID_LENGTH = 256

/** The four Redis commands the shared table needs, whatever the client library (or sockgate/cluster's primary, `'cluster'`). */
export interface SessionStore {
  /** Which library the client is, for messages. */
  readonly kind: 'ioredis' | 'node-redis' | 'cluster'
  /** The client is connected now; while it is not, nothing is sent (the library would queue it). */
  ready (): boolean
  get (key: string): Promise<string | null>
  /** SET with an expiry (PX). */
  set (key: string, value: string, ttlMs: number): Promise<unknown>
  del (key: string): Promise<unknown>
  /** PEXPIRE: push an existing key's expiry out. */
  expire (key: string, ttlMs: number): Promise<unknown>
}

type Method = (...args: unknown[]) => Promise<unknown>

/** `value`'s function `name`, bound to it, or undefined. */
function method (value: Record<string, unknown>, name: string): Method | undefined {
  const fn = value[name]
  return typeof fn === 'function' ? (fn as Method).bind(value) : undefined
}

/**
 * The {@link SessionStore} over a Redis client: ioredis (a `status` string,
 * `set(key, value, 'PX', ms)`, `pexpire`) or node-redis v4/v5 (an `isReady`
 * flag, `set(key, value, { PX })`, `pExpire`). Undefined for anything else.
 */
export function redisSessionStore (client: unknown): SessionStore | undefined {
  if (typeof client !== 'object' || client === null) return undefined
  const c = client as Record<string, unknown>
  const get = method(c, 'get')
  const set = method(c, 'set')
  const del = method(c, 'del')
  if (get === undefined || set === undefined || del === undefined) return undefined
  // node-redis first: its `isReady` is a getter on the prototype, and ioredis has nothing of the name.
  const pExpire = method(c, 'pExpire')
  if (typeof c.isReady === 'boolean' && pExpire !== undefined) {
    return {
      kind: 'node-redis',
      ready: () => c.isReady === true,
      get: get as SessionStore['get'],
      set: (key, value, ttlMs) => set(key, value, { PX: ttlMs }),
      del: (key) => del(key),
      expire: (key, ttlMs) => pExpire(key, ttlMs),
    }
  }
  const pexpire = method(c, 'pexpire')
  if (typeof c.status === 'string' && pexpire !== undefined) {
    return {
      kind: 'ioredis',
      ready: () => c.status === 'ready',
      get: get as SessionStore['get'],
      set: (key, value, ttlMs) => set(key, value, 'PX', ttlMs),
      del: (key) => del(key),
      expire: (key, ttlMs) => pexpire(key, ttlMs),
    }
  }
  return undefined
}

/** Told once when the store stops working, with the request that noticed. */
export type StoreDownListener = (error: StickyStoreError, req: IncomingMessage) => void

/**
 * One pool's sessions in the store: key `sockgate:sid:<pool>:<sid>`, value
 * the server's URL, expiry the local table's idle time. Never rejects and
 * never waits past {@link STORE_WAIT_MS}: a store that is down, slow or not
 * connected makes lookups answer "unknown" (the request is balanced), and is
 * reported once, with a `SOCKGATE_ERR_STICKY_STORE`, until a command works
 * again.
 */
export class SharedSessions {
  readonly #store: SessionStore
  readonly #prefix: string
  readonly #pool: string
  readonly #ttlMs: number
  readonly #onDown: StoreDownListener
  #up = true
  #pending = 0

  constructor (store: SessionStore, pool: string, ttlMs: number, onDown: StoreDownListener) {
    this.#store = store
    this.#pool = pool
    this.#prefix = `sockgate:sid:${pool}:`
    this.#ttlMs = ttlMs
    this.#onDown = onDown
  }

  /** The URL of the server that holds `sid`, as the store knows it, or undefined (unknown, or no answer in time). */
  lookup (sid: string, req: IncomingMessage): Promise<string | undefined> | undefined {
    if (sid.length > MAX_SID_LENGTH) return undefined
    if (!this.#store.ready()) return this.#failed(req, 'is not connected')
    if (this.#pending >= MAX_PENDING_LOOKUPS) return this.#failed(req, `has ${MAX_PENDING_LOOKUPS} lookups waiting for an answer`)
    this.#pending++
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#failed(req, `did not answer within ${STORE_WAIT_MS} ms`)
        resolve(undefined)
      }, STORE_WAIT_MS)
      this.#store.get(this.#prefix + sid).then((url) => {
        this.#up = true
        resolve(typeof url === 'string' ? url : undefined)
      }, (err: unknown) => {
        this.#failed(req, 'failed', err)
        resolve(undefined)
      }).finally(() => {
        clearTimeout(timer)
        this.#pending--
      })
    })
  }

  /** `sid` was opened by the server at `url`. */
  remember (sid: string, url: string, req: IncomingMessage): void {
    this.#send(req, (key) => this.#store.set(key, url, this.#ttlMs), sid)
  }

  /** `sid` is over. */
  forget (sid: string, req: IncomingMessage): void {
    this.#send(req, (key) => this.#store.del(key), sid)
  }

  /** `sid` is still in use here: its entry lives another idle time. */
  refresh (sid: string, req: IncomingMessage): void {
    this.#send(req, (key) => this.#store.expire(key, this.#ttlMs), sid)
  }

  /** A write nobody waits for: its failure only counts towards the one report. */
  #send (req: IncomingMessage, command: (key: string) => Promise<unknown>, sid: string): void {
    if (!this.#store.ready()) {
      this.#failed(req, 'is not connected')
      return
    }
    command(this.#prefix + sid).then(() => { this.#up = true }, (err: unknown) => this.#failed(req, 'failed', err))
  }

  /** Report the first failure since the store last worked; later ones are quiet. Always undefined, for lookups to return. */
  #failed (req: IncomingMessage, why: string, cause?: unknown): undefined {
    if (!this.#up) return undefined
    this.#up = false
    this.#onDown(new StickyStoreError(this.#pool, this.#store.kind, why, cause), req)
    return undefined
  }
}
