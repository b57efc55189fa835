import type { IncomingMessage } from 'node:http'
import { listTokens } from '../http-syntax.js'
import { createCookieSticky, SessionTable, sidFromOpenPacket, sidFromQuery, type CookieSticky } from './sticky.js'
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

/**
 * The sticky sessions of one pool: the signed cookie (`sticky.cookie`) and
 * the engine.io session table (`sticky.engineIo`), behind the three questions
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
  /** The signed cookie; null without `sticky.cookie`. */
  readonly cookie: CookieSticky | null
  readonly #servers: () => readonly UpstreamServer[]

  /**
   * @param spec The pool's normalised `sticky` option.
   * @param servers The pool's current members (a stable array between membership changes: the cookie table is cached per array).
   * @param table Bounds and clock of the session table.
   */
  constructor (spec: NormalizedUpstream['sticky'], servers: () => readonly UpstreamServer[], table: SessionTableOptions = {}) {
    this.#servers = servers
    this.sessions = spec.engineIo ? new SessionTable<UpstreamServer>(table) : null
    this.cookie = spec.cookie === null
      ? null
      : createCookieSticky({ name: spec.cookie.name, secret: spec.cookie.secret, ...(spec.cookie.maxAge === null ? {} : { maxAge: spec.cookie.maxAge }) })
  }

  /** True when the pool has any sticky mode; pools without one skip every hook. */
  static enabled (spec: NormalizedUpstream['sticky']): boolean {
    return spec.engineIo || spec.cookie !== null
  }

  /**
   * The member server `req` is pinned to: by its `?sid=` when the session
   * table knows it (the more precise pin, and the only one a cookie-less
   * client has), else by the cookie. Whether that server may take the
   * request is the caller's decision.
   */
  lookup (req: IncomingMessage): UpstreamServer | undefined {
    const url = req.url
    if (this.sessions !== null && url !== undefined) {
      const sid = sidFromQuery(url)
      if (sid !== undefined) {
        const server = this.sessions.get(sid)
        if (server !== undefined && this.#servers().includes(server)) return server
      }
    }
    if (this.cookie !== null) return this.cookie.serverFor(req.headers.cookie, this.#servers())
    return undefined
  }

  /**
   * Read the start of an HTTP answer from `server` to the request for `url`:
   * a polling handshake's open packet records the new session on `server`;
   * a 400 "Session ID unknown" for a `?sid=` request forgets that session
   * (it ended, or it lived on a server that is gone). Engine.io answers both
   * uncompressed (they are under its 1 KiB compression threshold), so the
   * first chunk is enough. Returns the miss for the second case.
   */
  learnFromResponse (url: string, server: UpstreamServer, statusCode: number, firstChunk: Buffer): StickyMiss | undefined {
    if (this.sessions === null) return undefined
    if (statusCode === 200) {
      if (!isPollingHandshake(url)) return undefined
      const sid = sidFromOpenPacket(firstChunk.toString('utf8', 0, Math.min(firstChunk.length, PEEK_BYTES)))
      if (sid !== undefined) this.sessions.set(sid, server)
    } else if (statusCode === 400) {
      return this.forgetIfUnknown(url, firstChunk)
    }
    return undefined
  }

  /**
   * An upgrade for `url` was refused with `response` (relayed to the client
   * as it is): when it is engine.io's 400 "Session ID unknown", forget that
   * session and tell `onMiss`. Only reads alongside the relay, never
   * consumes the body itself.
   */
  learnFromRefusal (url: string, response: IncomingMessage, onMiss: (miss: StickyMiss) => void): void {
    if (this.sessions === null || response.statusCode !== 400 || sidFromQuery(url) === undefined) return
    response.once('data', (chunk: Buffer) => {
      const miss = this.forgetIfUnknown(url, chunk)
      if (miss !== undefined) onMiss(miss)
    })
  }

  private forgetIfUnknown (url: string, chunk: Buffer): StickyMiss | undefined {
    const sid = sidFromQuery(url)
    if (sid === undefined || this.sessions === null) return undefined
    if (!chunk.toString('utf8', 0, Math.min(chunk.length, PEEK_BYTES)).includes(SESSION_UNKNOWN)) return undefined
    const owner = this.sessions.get(sid)
    this.sessions.delete(sid)
    return { sid, owner }
  }

  /**
   * The WebSocket tunnel of the upgrade for `url` closed: the engine.io
   * session it carried is over, so its entry goes now rather than when it
   * idles out. Only an entry still naming `server` is removed.
   */
  tunnelClosed (url: string, server: UpstreamServer): void {
    if (this.sessions === null) return
    const sid = sidFromQuery(url)
    if (sid !== undefined && this.sessions.get(sid) === server) this.sessions.delete(sid)
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
