import type { IncomingMessage } from 'node:http'
import { listTokens } from '../http-syntax.js'
import { serverNameOfSid } from '../engine-io-id.js'
import { SharedSessions, type StoreDownListener } from './session-store.js'
import { createCookieSticky, DEFAULT_SESSION_IDLE_MS, SessionTable, sidFromOpenPacket, sidFromQuery, type CookieSticky } from './sticky.js'
import type { NormalizedUpstream } from '../options.js'
import type { UpstreamServer } from '../upstream/server.js'

/**
 * What engine.io answers (HTTP 400, `{"code":1,"message":"Session ID unknown"}`
 * for polling, the bare text for an upgrade) to a request for a session it
 * does not hold: the failure stickiness exists to prevent.
 */
export const SESSION_UNKNOWN = 'Session ID unknown'

/**
 * An upstream answered {@link SESSION_UNKNOWN} for session `sid`. `owner`
 * is the server the table had pinned it to: the one that answered (it lost
 * the session), another one (it could not take the request, so failover sent
 * it elsewhere), or undefined (this gateway never saw the session open).
 */
export interface StickyMiss {
  sid: string
  owner: UpstreamServer | undefined
}

/** Bytes of a response's first chunk searched for an open packet or {@link SESSION_UNKNOWN}. */
const PEEK_BYTES = 512

/**
 * An engine.io polling handshake: `EIO=` and `transport=polling` in the query
 * and no `sid` yet (`/socket.io/?EIO=4&transport=polling&t=abc`). Its answer
 * carries the new session id in an open packet.
 */
export function isPollingHandshake (url: string): boolean {
  const query = url.indexOf('?')
  if (query === -1) return false
  return hasParam(url, query, 'EIO=') && hasParam(url, query, 'transport=polling') && sidFromQuery(url) === undefined
}

/** `name` (with its `=`) appears as a whole parameter of the query starting at `query`. */
function hasParam (url: string, query: number, name: string): boolean {
  let at = url.indexOf(name, query)
  while (at !== -1) {
    const before = url.charCodeAt(at - 1)
    if (before === 63 /* ? */ || before === 38 /* & */) return true
    at = url.indexOf(name, at + name.length)
  }
  return false
}

/**
 * The client reached this hop over TLS, or through a trusted proxy that says
 * it did (`X-Forwarded-Proto: https`): the sticky cookie then gets `Secure`.
 */
export function isSecureClient (req: IncomingMessage, encrypted: boolean, trusted: boolean): boolean {
  if (encrypted) return true
  if (!trusted) return false
  const proto = req.headers['x-forwarded-proto']
  // The first item is what the proxy nearest the client saw.
  return typeof proto === 'string' && listTokens(proto)[0] === 'https'
}

/** Settings of the engine.io session table; see {@link SessionTable}. */
export interface SessionTableOptions {
  max?: number
  idleMs?: number
  now?: () => number
}

/** Who the pool is, for the shared store's keys and its one report. */
export interface StickyContext {
  pool: string
  onStoreDown: StoreDownListener
}

/** Servers by `name` for one member array (null when none has a name), rebuilt when membership changes. */
interface NamedMembers {
  servers: readonly UpstreamServer[]
  byName: Map<string, UpstreamServer> | null
}

function namedMembers (servers: readonly UpstreamServer[]): NamedMembers {
  let byName: Map<string, UpstreamServer> | null = null
  for (const s of servers) {
    if (s.name === null) continue
    byName ??= new Map()
    if (!byName.has(s.name)) byName.set(s.name, s)
  }
  return { servers, byName }
}

/**
 * The sticky sessions of one pool: the signed cookie (`sticky.cookie`) and
 * engine.io sessions (`sticky.engineIo`: a sid's server name, then the
 * session table, with the shared store behind it), behind the three questions
 * the data paths ask: which server is this request pinned to
 * ({@link lookup}), what did the answer teach us ({@link learnFromResponse}),
 * and does the client need a cookie ({@link setCookieFor}).
 *
 * A pin is only a preference: the pool honours it while the server is
 * `availableForSticky` (up, possibly draining) and failover has not just
 * tried it; otherwise the request is balanced as if it had none, and the
 * client learns its new server (a new cookie, or a new handshake).
 */
export class Stickiness {
  /** Engine.io session id → the server that created the session; null without `sticky.engineIo`. */
  readonly sessions: SessionTable<UpstreamServer> | null
  /** The sessions every gateway shares (`sticky.engineIo.store`), behind {@link sessions}; null without a store. */
  readonly shared: SharedSessions | null
  /** The signed cookie; null without `sticky.cookie`. */
  readonly cookie: CookieSticky | null
  readonly #servers: () => readonly UpstreamServer[]
  /** How often a session still in use here pushes its expiry in the store out: a quarter of the idle time. */
  readonly #refreshMs: number
  #named: NamedMembers | undefined

  /**
   * @param spec The pool's normalised `sticky` option.
   * @param servers The pool's current members (a stable array between membership changes: the cookie table is cached per array).
   * @param table Bounds and clock of the session table.
   * @param context The pool's name and where a store failure is reported.
   */
  constructor (spec: NormalizedUpstream['sticky'], servers: () => readonly UpstreamServer[], table: SessionTableOptions = {},
    context: StickyContext = { pool: '', onStoreDown: () => {} }) {
    this.#servers = servers
    this.sessions = spec.engineIo ? new SessionTable<UpstreamServer>(table) : null
    const idleMs = table.idleMs ?? DEFAULT_SESSION_IDLE_MS
    this.#refreshMs = idleMs / 4
    this.shared = spec.engineIo && spec.store !== null ? new SharedSessions(spec.store, context.pool, idleMs, context.onStoreDown) : null
    this.cookie = spec.cookie === null
      ? null
      : createCookieSticky({ name: spec.cookie.name, secret: spec.cookie.secret, ...(spec.cookie.maxAge === null ? {} : { maxAge: spec.cookie.maxAge }) })
  }

  /** True when the pool has any sticky mode; pools without one skip every hook. */
  static enabled (spec: NormalizedUpstream['sticky']): boolean {
    return spec.engineIo || spec.cookie !== null
  }

  /**
   * The member server `req` is pinned to: by its `?sid=` when the sid names
   * a member (`engineIoId()`) or the session table knows it (the more
   * precise pins, and the only ones a cookie-less client has), else by the
   * cookie. Whether that server may take the request is the caller's
   * decision.
   */
  lookup (req: IncomingMessage): UpstreamServer | undefined {
    const url = req.url
    if (this.sessions !== null && url !== undefined) {
      const sid = sidFromQuery(url)
      if (sid !== undefined) {
        const named = this.namedMember(sid)
        if (named !== undefined) return named
        const server = this.sessions.get(sid)
        if (server !== undefined && this.#servers().includes(server)) {
          if (this.shared !== null && this.sessions.due(sid, this.#refreshMs)) this.shared.refresh(sid, req)
          return server
        }
      }
    }
    if (this.cookie !== null) return this.cookie.serverFor(req.headers.cookie, this.#servers())
    return undefined
  }

  /**
   * The member whose name `sid` carries (`engineIoId()`), or undefined:
   * a sid of another form, a name no member has, or a pool whose servers have
   * no names (one array comparison, then nothing).
   */
  namedMember (sid: string): UpstreamServer | undefined {
    const servers = this.#servers()
    let named = this.#named
    if (named === undefined || named.servers !== servers) named = this.#named = namedMembers(servers)
    if (named.byName === null) return undefined
    const name = serverNameOfSid(sid)
    return name === undefined ? undefined : named.byName.get(name)
  }

  /**
   * With a shared store, when `req`'s `?sid=` is placed neither by its name
   * nor by the local table: the store's lookup, which records what it finds
   * in the local table for the pick that follows. Resolves (never rejects)
   * within `STORE_WAIT_MS` (150 ms). Otherwise undefined: no promise.
   */
  fromStore (req: IncomingMessage): Promise<void> | undefined {
    const { shared, sessions } = this
    if (shared === null || sessions === null || req.url === undefined) return undefined
    const sid = sidFromQuery(req.url)
    if (sid === undefined || this.namedMember(sid) !== undefined || sessions.get(sid) !== undefined) return undefined
    return shared.lookup(sid, req)?.then((url) => {
      const server = url === undefined ? undefined : this.#servers().find((s) => s.url === url)
      if (server !== undefined) sessions.set(sid, server)
    })
  }

  /**
   * Read the start of an HTTP answer from `server` to `req`:
   * a polling handshake's open packet records the new session on `server`;
   * a 400 "Session ID unknown" for a `?sid=` request forgets that session
   * (it ended, or it lived on a server that is gone). Engine.io answers both
   * uncompressed (they are under its 1 KiB compression threshold), so the
   * first chunk is enough. Returns the miss for the second case.
   */
  learnFromResponse (req: IncomingMessage, server: UpstreamServer, statusCode: number, firstChunk: Buffer): StickyMiss | undefined {
    if (this.sessions === null) return undefined
    const url = req.url ?? '/'
    if (statusCode === 200) {
      if (!isPollingHandshake(url)) return undefined
      const sid = sidFromOpenPacket(firstChunk.toString('utf8', 0, Math.min(firstChunk.length, PEEK_BYTES)))
      // A sid that names its own server routes by that name on every gateway: nothing to remember.
      if (sid === undefined || this.namedMember(sid) === server) return undefined
      this.sessions.set(sid, server)
      this.shared?.remember(sid, server.url, req)
    } else if (statusCode === 400) {
      return this.forgetIfUnknown(req, firstChunk)
    }
    return undefined
  }

  /**
   * An upgrade for `url` was refused with `response` (relayed to the client
   * as it is): when it is engine.io's 400 "Session ID unknown", forget that
   * session and tell `onMiss`. Only reads alongside the relay, never
   * consumes the body itself.
   */
  learnFromRefusal (req: IncomingMessage, response: IncomingMessage, onMiss: (miss: StickyMiss) => void): void {
    if (this.sessions === null || response.statusCode !== 400 || sidFromQuery(req.url ?? '/') === undefined) return
    response.once('data', (chunk: Buffer) => {
      const miss = this.forgetIfUnknown(req, chunk)
      if (miss !== undefined) onMiss(miss)
    })
  }

  private forgetIfUnknown (req: IncomingMessage, chunk: Buffer): StickyMiss | undefined {
    const sid = sidFromQuery(req.url ?? '/')
    if (sid === undefined || this.sessions === null) return undefined
    if (!chunk.toString('utf8', 0, Math.min(chunk.length, PEEK_BYTES)).includes(SESSION_UNKNOWN)) return undefined
    const owner = this.sessions.get(sid) ?? this.namedMember(sid)
    this.sessions.delete(sid)
    this.shared?.forget(sid, req)
    return { sid, owner }
  }

  /**
   * The WebSocket tunnel of the upgrade `req` closed: the engine.io
   * session it carried is over, so its entry goes now (here and in the
   * store) rather than when it idles out. Only an entry still naming
   * `server` is removed.
   */
  tunnelClosed (req: IncomingMessage, server: UpstreamServer): void {
    if (this.sessions === null) return
    const sid = sidFromQuery(req.url ?? '/')
    if (sid === undefined || this.sessions.get(sid) !== server) return
    this.sessions.delete(sid)
    this.shared?.forget(sid, req)
  }

  /** `server` left the pool: forget the sessions pinned to it. */
  forgetServer (server: UpstreamServer): void {
    this.sessions?.deleteWhere((s) => s === server)
  }

  /**
   * The `Set-Cookie` value to add to the answer `server` gives `req`, or
   * undefined when cookie stickiness is off or the client's cookie already
   * names `server`. A client with no cookie, a forged one, or one naming a
   * server that is gone or was passed over gets a cookie for `server`.
   */
  setCookieFor (server: UpstreamServer, req: IncomingMessage, secure: boolean): string | undefined {
    if (this.cookie === null) return undefined
    if (this.cookie.serverFor(req.headers.cookie, this.#servers()) === server) return undefined
    return this.cookie.setCookie(server, secure)
  }
}
