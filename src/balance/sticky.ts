import { createHash, createHmac } from 'node:crypto'
import type { UpstreamServer } from '../upstream/server.js'

// ---------------------------------------------------------------- cookie

/** Characters of the cookie value: 22 base64url characters carry 132 bits of the HMAC. */
const COOKIE_VALUE_LENGTH = 22

/** Cookie stickiness for one pool, from {@link createCookieSticky}. */
export interface CookieSticky {
  /** Name of the cookie. */
  readonly name: string
  /** The opaque cookie value that pins a client to `server`. */
  valueFor (server: UpstreamServer): string
  /**
   * The server of `servers` a request's `Cookie` header pins it to, or
   * undefined when the cookie is absent, forged, or names a server that is no
   * longer in `servers`. Whether that server may take the request is the
   * caller's decision (`availableForSticky`).
   */
  serverFor (cookieHeader: string | undefined, servers: readonly UpstreamServer[]): UpstreamServer | undefined
  /** A `Set-Cookie` value pinning the client to `server`; `secure` adds `Secure` (set it for HTTPS clients). */
  setCookie (server: UpstreamServer, secure: boolean): string
}

/**
 * Sticky sessions by cookie (nginx plus `sticky cookie`).
 *
 * The value is the first 22 base64url characters of
 * HMAC-SHA256(`secret`, `server.url`): it reveals nothing about the server's
 * address, and a client cannot steer itself to a server of its choosing
 * without knowing the secret. With the {@link defaultStickySecret} (no
 * `secret` configured), anyone who knows the pool's name and server URLs can
 * compute the values; configure `secret` when that matters.
 *
 * `name` is a cookie name (an RFC 9110 token, which `normalizeOptions()`
 * checks: anything else could split the Set-Cookie header). `maxAge` is in
 * seconds, as the cookie's `Max-Age` attribute; without it the cookie lasts
 * for the browser session.
 */
export function createCookieSticky (opts: { name: string, secret: string, maxAge?: number }): CookieSticky {
  const { name, secret, maxAge } = opts
  const attributes = '; Path=/; HttpOnly; SameSite=Lax' +
    (maxAge === undefined ? '' : `; Max-Age=${Math.max(0, Math.floor(maxAge))}`)
  const prefix = name + '='

  // HMACs are per server object (computed once); lookup tables per `servers`
  // array, which the pool replaces when its membership changes.
  const values = new WeakMap<UpstreamServer, string>()
  const tables = new WeakMap<readonly UpstreamServer[], Map<string, UpstreamServer>>()

  function valueFor (server: UpstreamServer): string {
    let v = values.get(server)
    if (v === undefined) {
      v = createHmac('sha256', secret).update(server.url).digest('base64url').slice(0, COOKIE_VALUE_LENGTH)
      values.set(server, v)
    }
    return v
  }

  function tableFor (servers: readonly UpstreamServer[]): Map<string, UpstreamServer> {
    let table = tables.get(servers)
    if (table === undefined) {
      table = new Map()
      for (const s of servers) table.set(valueFor(s), s)
      tables.set(servers, table)
    }
    return table
  }

  function serverFor (cookieHeader: string | undefined, servers: readonly UpstreamServer[]): UpstreamServer | undefined {
    if (cookieHeader === undefined || !cookieHeader.includes(prefix)) return undefined
    // Lookup among the valid values only: what the client sent is never
    // compared byte by byte with a secret-derived value, so there is no
    // timing to measure beyond the Map's hashing of the client's own string.
    let table: Map<string, UpstreamServer> | undefined
    // Several cookies of the same name can arrive (set for different paths or
    // domains); the first that names a current server wins.
    for (const part of cookieHeader.split(';')) {
      const pair = part.trim()
      if (!pair.startsWith(prefix)) continue
      let value = pair.slice(prefix.length).trim()
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
      if (value.length !== COOKIE_VALUE_LENGTH) continue
      table ??= tableFor(servers)
      const s = table.get(value)
      if (s !== undefined) return s
    }
    return undefined
  }

  function setCookie (server: UpstreamServer, secure: boolean): string {
    return prefix + valueFor(server) + attributes + (secure ? '; Secure' : '')
  }

  return { name, valueFor, serverFor, setCookie }
}

/**
 * The cookie secret used when a pool's `sticky.cookie` has none: SHA-256 (hex)
 * of the pool name and its server URLs, sorted. It depends only on the
 * configuration, so every gateway process with the same pools issues and
 * accepts the same cookies without sharing a secret.
 *
 * It is not secret: anyone who knows the pool name and the URLs can compute
 * the cookie of each server and choose among them. Set `secret` to stop that.
 */
export function defaultStickySecret (poolName: string, urls: readonly string[]): string {
  // JSON keeps the parts apart: ('a', ['b#c']) and ('a#b', ['c']) differ.
  return createHash('sha256').update(JSON.stringify([poolName, ...[...urls].sort()])).digest('hex')
}

// ---------------------------------------------------------------- engine.io

/** Milliseconds a session table keeps a session without a request (see {@link SessionTable}). */
export const DEFAULT_SESSION_IDLE_MS = 120_000

interface SessionEntry<T> {
  value: T
  /** Last time the entry was set or read. */
  at: number
  /** Last time {@link SessionTable.due} said yes (or the entry was set). */
  mark: number
}

/**
 * A bounded map from engine.io session id to the server (or anything else)
 * that owns the session, forgetting sessions idle for longer than `idleMs`.
 *
 * The Map's insertion order is kept as recency order (a read moves the entry
 * to the end), so the oldest entries are always first: they are the ones
 * evicted past `max`, and expired ones are swept from that end on each `set`.
 * There is no timer: a gateway with no traffic holds no work, and an entry's
 * expiry is also checked when it is read.
 */
export class SessionTable<T> {
  readonly #map = new Map<string, SessionEntry<T>>()
  readonly #max: number
  readonly #idleMs: number
  readonly #now: () => number

  /**
   * @param options.max Entries kept at most; past it the least recently used go. Default: `100000`.
   * @param options.idleMs Milliseconds without a read or write after which a session is forgotten. Default: `120000`
   *   (engine.io's default pingInterval + pingTimeout is 45 s, so a live session is touched well within it).
   * @param options.now Clock, for tests. Default: `Date.now`.
   */
  constructor ({ max = 100_000, idleMs = DEFAULT_SESSION_IDLE_MS, now = Date.now }: { max?: number, idleMs?: number, now?: () => number } = {}) {
    this.#max = max
    this.#idleMs = idleMs
    this.#now = now
  }

  /** Entries held, including expired ones not swept yet. */
  get size (): number {
    return this.#map.size
  }

  /** The value for `sid` if its session is still live; a hit counts as activity. */
  get (sid: string): T | undefined {
    const entry = this.#map.get(sid)
    if (entry === undefined) return undefined
    const now = this.#now()
    if (now - entry.at > this.#idleMs) {
      this.#map.delete(sid)
      return undefined
    }
    entry.at = now
    this.#map.delete(sid)
    this.#map.set(sid, entry)
    return entry.value
  }

  /** Records `sid` → `value` as the most recent entry, then sweeps expired entries and trims to `max`. */
  set (sid: string, value: T): this {
    const now = this.#now()
    this.#map.delete(sid)
    this.#map.set(sid, { value, at: now, mark: now })
    for (const [key, entry] of this.#map) {
      if (this.#map.size > this.#max || now - entry.at > this.#idleMs) this.#map.delete(key)
      else break
    }
    return this
  }

  /**
   * True once per `ms` for a live `sid`: when more than `ms` have passed
   * since it was set or last said yes. Does not count as activity. Lets the
   * caller do something at most once per `ms` per session (push its expiry
   * out in a shared store, say) without a timer.
   */
  due (sid: string, ms: number): boolean {
    const entry = this.#map.get(sid)
    if (entry === undefined) return false
    const now = this.#now()
    if (now - entry.mark <= ms) return false
    entry.mark = now
    return true
  }

  /** Forgets `sid`; true if it was there. */
  delete (sid: string): boolean {
    return this.#map.delete(sid)
  }

  /** Forgets every entry `pred` accepts (say, the sessions of a server that went down); returns how many. */
  deleteWhere (pred: (value: T, sid: string) => boolean): number {
    let n = 0
    for (const [sid, entry] of this.#map) {
      if (pred(entry.value, sid)) {
        this.#map.delete(sid)
        n++
      }
    }
    return n
  }
}

/**
 * The `sid` query parameter of a request target
 * (`/socket.io/?EIO=4&transport=polling&sid=abc` → `abc`), decoded, or
 * undefined. Runs on every proxied request, so it scans the string instead of
 * building a URL, and answers at once for targets without `sid=`.
 */
export function sidFromQuery (url: string): string | undefined {
  let at = url.indexOf('sid=')
  if (at === -1) return undefined
  const query = url.indexOf('?')
  if (query === -1) return undefined
  const hash = url.indexOf('#', query)
  const end = hash === -1 ? url.length : hash
  while (at !== -1 && at < end) {
    const before = url.charCodeAt(at - 1)
    // Only a whole parameter name counts: `?sid=` or `&sid=`, not `xsid=`.
    if (at > query && (before === 63 /* ? */ || before === 38 /* & */)) {
      const start = at + 4
      let stop = url.indexOf('&', start)
      if (stop === -1 || stop > end) stop = end
      const raw = url.slice(start, stop)
      if (raw === '') return undefined
      return decodeQueryValue(raw)
    }
    at = url.indexOf('sid=', at + 4)
  }
  return undefined
}

/** Decodes a query value as engine.io's own parser does (`+` is a space); undefined if malformed. */
function decodeQueryValue (raw: string): string | undefined {
  if (!raw.includes('%') && !raw.includes('+')) return raw
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '))
  } catch {
    return undefined
  }
}

/**
 * Start of an engine.io open packet: an optional EIO=3 length prefix (`96:`),
 * packet type `0`, then the JSON object up to its `sid` member. engine.io
 * writes `sid` first, but any members before it are allowed as long as they
 * hold no nested object.
 */
const OPEN_PACKET = /^(?:\d+:)?0\{[^{}]*?"sid"\s*:\s*"((?:[^"\\]|\\.)*)"/

/**
 * The session id in the body of a polling handshake response, if the body
 * starts with an engine.io open packet: EIO=4 `0{"sid":"…",…}` or EIO=3
 * `96:0{"sid":"…",…}`. Only the start of the body is read, so the first chunk
 * of a response is enough and the rest of the JSON need not be there.
 * Anything else (a message packet, an error, JSONP) gives undefined.
 */
export function sidFromOpenPacket (body: string): string | undefined {
  const m = OPEN_PACKET.exec(body)
  if (m === null) return undefined
  const raw = m[1]!
  if (raw === '') return undefined
  if (!raw.includes('\\')) return raw
  try {
    return JSON.parse(`"${raw}"`) as string
  } catch {
    return undefined
  }
}
