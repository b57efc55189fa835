/**
 * Every failure sockgate reports has a stable code, an HTTP status for the
 * client and a sentence the operator can act on. Users match on `code`,
 * never on `message`. A released code is never reused for another meaning.
 */

/** Every error code sockgate can report. */
export type ErrorCode =
  | 'SOCKGATE_ERR_INVALID_OPTION'
  | 'SOCKGATE_ERR_BAD_REQUEST'
  | 'SOCKGATE_ERR_BAD_UPGRADE'
  | 'SOCKGATE_ERR_UPGRADE_VERSION'
  | 'SOCKGATE_ERR_BODY_TOO_LARGE'
  | 'SOCKGATE_ERR_NO_ROUTE'
  | 'SOCKGATE_ERR_NO_UPSTREAM'
  | 'SOCKGATE_ERR_CLOSED'
  | 'SOCKGATE_ERR_UPSTREAM_CONNECT'
  | 'SOCKGATE_ERR_UPSTREAM_TIMEOUT'
  | 'SOCKGATE_ERR_UPSTREAM_PROTOCOL'
  | 'SOCKGATE_ERR_UPGRADE_REFUSED'
  | 'SOCKGATE_ERR_CLIENT_ABORTED'
  | 'SOCKGATE_ERR_CLIENT_TIMEOUT'
  | 'SOCKGATE_ERR_FORBIDDEN'
  | 'SOCKGATE_ERR_BODY_CONSUMED'
  | 'SOCKGATE_ERR_STICKY_MISS'
  | 'SOCKGATE_ERR_STICKY_STORE'
  | 'SOCKGATE_ERR_HOOK'
  | 'SOCKGATE_ERR_DISCOVERY'
  | 'SOCKGATE_ERR_CONNECT_PROTOCOL'
  | 'SOCKGATE_ERR_RATE_LIMITED'
  | 'SOCKGATE_ERR_ORIGIN'
  | 'SOCKGATE_ERR_PROXY_PROTOCOL'

/** Base class of every sockgate error. */
export class SockgateError extends Error {
  /** Stable, documented code (`docs/errors.md`). */
  readonly code: ErrorCode
  /** Status the client was (or would have been) answered with. */
  readonly statusCode: number

  constructor (code: ErrorCode, statusCode: number, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'SockgateError'
    this.code = code
    this.statusCode = statusCode
  }
}

/** `createGateway()` was given an option it cannot use; the message names the option path. */
export class InvalidOptionError extends SockgateError {
  constructor (path: string, rule: string) {
    super('SOCKGATE_ERR_INVALID_OPTION', 0, `${path} ${rule}`)
    this.name = 'InvalidOptionError'
  }
}

/** A request sockgate refuses to forward: CONNECT, an absolute-form target, a header with CR/LF. */
export class BadRequestError extends SockgateError {
  constructor (reason: string) {
    super('SOCKGATE_ERR_BAD_REQUEST', 400, `Bad request: ${reason}.`)
    this.name = 'BadRequestError'
  }

  /**
   * A request Node or undici refuses to put on the wire (a header value past
   * Latin-1, a path with a space): no client can send one, so a hook wrote
   * it. Nothing reached the upstream, which is not blamed.
   */
  static unsendable (cause: unknown): BadRequestError {
    return new BadRequestError(`the request cannot be sent upstream (${(cause as Error | undefined)?.message ?? String(cause)}); ` +
      'check what a hook wrote into req.headers or req.url')
  }

  /**
   * A request target that is not a path: absolute-form, authority-form, or a
   * `//host` path. The upstream comes from the route table only, never from
   * the request target.
   */
  static notAPath (): BadRequestError {
    return new BadRequestError('the request target must be a path')
  }
}

/** A malformed upgrade, or one asking for a protocol that is not in `upgrades`. */
export class BadUpgradeError extends SockgateError {
  constructor (reason: string) {
    super('SOCKGATE_ERR_BAD_UPGRADE', 400, `Bad upgrade request: ${reason}.`)
    this.name = 'BadUpgradeError'
  }
}

/** The client asked for a WebSocket version other than 13 (RFC 6455 §4.4). */
export class UpgradeVersionError extends SockgateError {
  constructor (version: string | undefined) {
    super('SOCKGATE_ERR_UPGRADE_VERSION', 426,
      `Unsupported Sec-WebSocket-Version ${JSON.stringify(version ?? '')}: only version 13 (RFC 6455) is supported; update the client.`)
    this.name = 'UpgradeVersionError'
  }
}

/** The request body is larger than `limits.body`. */
export class BodyTooLargeError extends SockgateError {
  constructor (limit: number) {
    super('SOCKGATE_ERR_BODY_TOO_LARGE', 413,
      `Request body is larger than limits.body (${limit} bytes); raise limits.body if such bodies are expected.`)
    this.name = 'BodyTooLargeError'
  }
}

/** An upgrade that no route matches, with no other `upgrade` listener on the server. */
export class NoRouteError extends SockgateError {
  constructor (host: string, path: string) {
    super('SOCKGATE_ERR_NO_ROUTE', 404,
      `No route matches host ${JSON.stringify(host)} and path ${JSON.stringify(path)}; add a route for it or attach another upgrade handler.`)
    this.name = 'NoRouteError'
  }
}

/** No server of the pool can take the request (down, draining or full). */
export class NoUpstreamError extends SockgateError {
  constructor (pool: string) {
    super('SOCKGATE_ERR_NO_UPSTREAM', 503,
      `No server of upstream pool "${pool}" is available (all down, draining or at maxConns, or none discovered yet); check the status page.`)
    this.name = 'NoUpstreamError'
  }
}

/** The gateway is closing or closed and takes no new work. */
export class GatewayClosedError extends SockgateError {
  constructor () {
    super('SOCKGATE_ERR_CLOSED', 503, 'The gateway is closing and takes no new requests or upgrades.')
    this.name = 'GatewayClosedError'
  }
}

/** The upstream refused or reset the connection before answering. */
export class UpstreamConnectError extends SockgateError {
  /** Some of the request's bytes had left the gateway: the upstream may have acted on it (failover replays only what is safe). */
  readonly requestSent: boolean

  constructor (url: string, cause: unknown, requestSent = false) {
    const why = (cause as { code?: string } | undefined)?.code ?? (cause as Error | undefined)?.message ?? 'unknown error'
    super('SOCKGATE_ERR_UPSTREAM_CONNECT', 502,
      `Upstream ${url} failed ${requestSent ? 'after the request was sent, ' : ''}before answering (${why}); ` +
      'check that it is running and reachable from the gateway.', { cause })
    this.name = 'UpstreamConnectError'
    this.requestSent = requestSent
  }
}

/** Connecting to, or waiting for, the upstream took longer than the configured timeout. */
export class UpstreamTimeoutError extends SockgateError {
  /** The request had been sent: true for every phase but `connect`. */
  readonly requestSent: boolean

  constructor (url: string, phase: 'connect' | 'handshake' | 'request', ms: number) {
    super('SOCKGATE_ERR_UPSTREAM_TIMEOUT', 504,
      `Upstream ${url} did not complete the ${phase} within timeouts.${phase} (${ms} ms); check its load or raise the timeout.`)
    this.name = 'UpstreamTimeoutError'
    this.requestSent = phase !== 'connect'
  }
}

/**
 * The upstream answered with something that is not valid HTTP for this
 * request. It did answer, so this is not retried and not counted against it.
 */
export class UpstreamProtocolError extends SockgateError {
  /** `hint`: what to do, when it is not to check where the route points. */
  constructor (url: string, reason: string, cause?: unknown, hint = 'check that the route points at the right service') {
    super('SOCKGATE_ERR_UPSTREAM_PROTOCOL', 502, `Upstream ${url} sent an invalid answer: ${reason}; ${hint}.`, { cause })
    this.name = 'UpstreamProtocolError'
  }
}

/** The upstream answered an upgrade with something other than 101; the answer was relayed. */
export class UpgradeRefusedError extends SockgateError {
  constructor (url: string, statusCode: number) {
    super('SOCKGATE_ERR_UPGRADE_REFUSED', statusCode,
      `Upstream ${url} refused the upgrade with ${statusCode}; the answer was relayed to the client and both sockets closed.`)
    this.name = 'UpgradeRefusedError'
  }
}

/** The client went away before the exchange completed (nginx logs these as 499). */
export class ClientAbortedError extends SockgateError {
  constructor (cause?: unknown) {
    super('SOCKGATE_ERR_CLIENT_ABORTED', 499, 'The client closed the connection before the answer was complete.', { cause })
    this.name = 'ClientAbortedError'
  }
}

/**
 * The client accepted no data for `timeouts.send` while an answer was being
 * sent to it (nginx `send_timeout`): its connection was cut and the upstream
 * request aborted, so the upstream connection is free again.
 */
export class ClientTimeoutError extends SockgateError {
  constructor (ms: number) {
    super('SOCKGATE_ERR_CLIENT_TIMEOUT', 408,
      `The client read nothing for timeouts.send (${ms} ms) while its answer was being sent; the connection was cut and the ` +
      'upstream request aborted. Expected now and then from stalled clients; if clients on slow links hit it, raise timeouts.send.')
    this.name = 'ClientTimeoutError'
  }
}

/** The `status.auth` hook refused the request (or threw): the status page stays private. */
export class ForbiddenError extends SockgateError {
  constructor (what: string) {
    super('SOCKGATE_ERR_FORBIDDEN', 403, `Forbidden: status.auth does not allow this request to see ${what}.`)
    this.name = 'ForbiddenError'
  }
}

/** Middleware read the request body before sockgate, and what it left cannot be encoded again. */
export class BodyConsumedError extends SockgateError {
  constructor (type: string) {
    super('SOCKGATE_ERR_BODY_CONSUMED', 500,
      `The request body (${type}) was already read by a body parser mounted before sockgate, and what it left in req.body ` +
      'cannot be encoded again; mount sockgate before the body parser, or mount the parser only on the app\'s own routes.')
    this.name = 'BodyConsumedError'
  }
}

/**
 * An upstream answered engine.io's "Session ID unknown" to a request that
 * named a session: the answer is relayed, and this says why it happened.
 */
export class StickyMissError extends SockgateError {
  /** `owner`: the URL of the server the gateway had pinned the session to, if it had. */
  constructor (url: string, sid: string, owner: string | undefined) {
    super('SOCKGATE_ERR_STICKY_MISS', 400, owner === url
      ? `Upstream ${url} no longer holds engine.io session ${JSON.stringify(sid)}, which sockgate had pinned to it ` +
        '(it restarted, or the session timed out); the client reconnects, and if this repeats check the server\'s restarts and pingTimeout.'
      : owner !== undefined
        ? `Engine.io session ${JSON.stringify(sid)} lives on ${owner}, which could not take the request (down, or full), so it went ` +
          `to ${url}, which does not hold it; the client reconnects with a new session. Expected while a node is down.`
        : `Upstream ${url} does not hold engine.io session ${JSON.stringify(sid)}, and this gateway never saw the session open: ` +
        'its handshake went through another gateway process, or sticky.engineIo is off; see docs/balancing.md on sticky sessions.')
    this.name = 'StickyMissError'
  }
}

/**
 * The shared session store (`sticky.engineIo.store`, Redis, or the table of
 * the sockgate/cluster primary) stopped working:
 * reported once, until it works again. Requests are not refused: those
 * whose session neither its sid's name nor this gateway places go on
 * balanced, so 503 is only what the store itself is.
 */
export class StickyStoreError extends SockgateError {
  /** `why`: what it did (`is not connected`, `did not answer within 150 ms`, `failed`). */
  constructor (pool: string, client: string, why: string, cause?: unknown) {
    const detail = cause === undefined ? '' : ` (${cause instanceof Error ? cause.message : String(cause)})`
    super('SOCKGATE_ERR_STICKY_STORE', 503,
      `The sticky session store of pool "${pool}" (${client}) ${why}${detail}; until it answers, requests for sessions this ` +
      'gateway has not seen are balanced without a pin and their clients reconnect. ' + (client === 'cluster'
        ? 'The sockgate/cluster primary keeps this table: check that it runs and is not blocked (CPU-bound, stopped).'
        : 'Check that Redis runs and is reachable from the gateway.'),
      { cause })
    this.name = 'StickyStoreError'
  }
}

/** A hook of the options (`authorize`, `onError`, `onResponse`) threw, rejected or answered with something unusable. */
export class HookError extends SockgateError {
  constructor (hook: 'authorize' | 'onError' | 'onResponse', cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause)
    super('SOCKGATE_ERR_HOOK', 500, `The ${hook} hook failed (${why}); the client got a 500. Fix the hook: see the cause.`, { cause })
    this.name = 'HookError'
  }
}

/**
 * A DNS lookup of a pool's `discover` name failed (timeout, SERVFAIL,
 * refused) or found no server at all (NXDOMAIN, an empty answer). The pool
 * keeps the servers of its last good answer; no client is answered because
 * of it, hence status 0. Reported once until a lookup succeeds again.
 */
export class DiscoveryError extends SockgateError {
  /** `why`: the resolver's code (`'ESERVFAIL'`, `'ETIMEOUT'`, `'EREFUSED'`) or `'empty'`; `kept`: servers the pool keeps. */
  constructor (pool: string, dns: string, why: string, kept: number, options?: { cause?: unknown }) {
    const found = why === 'empty' ? 'found no server (no records, or NXDOMAIN)' : `failed (${why})`
    super('SOCKGATE_ERR_DISCOVERY', 0, `The DNS lookup of ${JSON.stringify(dns)} for pool "${pool}" ${found}; the pool keeps the ` +
      `${kept} server${kept === 1 ? '' : 's'} it has and retries on the interval. Check the name and that the resolver answers it ` +
      '(dig @resolver NAME); see docs/discovery.md.', options)
    this.name = 'DiscoveryError'
  }
}

/**
 * A connection broke the `proxyProtocol` contract: a trusted peer sent no
 * valid PROXY header in time, or another peer sent one. The connection was
 * closed before a byte of it reached HTTP (400, for the logs only). Also a
 * request on a connection that never passed the check (500): the server was
 * attached too late.
 */
export class ProxyProtocolError extends SockgateError {
  constructor (message: string, statusCode = 400) {
    super('SOCKGATE_ERR_PROXY_PROTOCOL', statusCode, message)
    this.name = 'ProxyProtocolError'
  }

  /** A peer in `proxyProtocol.trusted` whose connection did not start with a valid header. */
  static fromTrusted (peer: string, problem: string): ProxyProtocolError {
    return new ProxyProtocolError(`Connection from ${peer}, a proxyProtocol.trusted peer, ${problem}; it was closed. ` +
      'Turn on PROXY protocol (v1 or v2) for this target on the load balancer, or take the address out of proxyProtocol.trusted.')
  }

  /** A peer outside `proxyProtocol.trusted` that sent a header: it may not say who the client is. */
  static fromUntrusted (peer: string): ProxyProtocolError {
    return new ProxyProtocolError(`Connection from ${peer}, which is not in proxyProtocol.trusted, started with a PROXY protocol header; ` +
      'it was closed. If this peer is your load balancer, add its address or subnet to proxyProtocol.trusted.')
  }

  /** A request on a connection the server took before the gateway was attached to it. */
  static notChecked (): ProxyProtocolError {
    return new ProxyProtocolError('proxyProtocol is set, but this connection was never checked for a PROXY header: the server took it ' +
      'before the gateway was attached. Attach before the server listens: gateway.attach(server), proxy.attach(server) or ' +
      "listen(app, port) from 'sockgate/express' or 'sockgate/koa'.", 500)
  }
}

/**
 * `gateway.attachHttp2()` was given a server that does not offer WebSockets
 * over HTTP/2: browsers only use them when the server sends
 * SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3), which sockgate never turns
 * on by itself. Thrown, never emitted.
 */
export class ConnectProtocolError extends SockgateError {
  constructor () {
    super('SOCKGATE_ERR_CONNECT_PROTOCOL', 0,
      'The server given to gateway.attachHttp2() does not offer WebSockets over HTTP/2: create it with ' +
      'http2.createSecureServer({ ..., settings: { enableConnectProtocol: true } }) (browsers only use them when it is offered).')
    this.name = 'ConnectProtocolError'
  }
}

/** The `limits.perClient` setting that refused a request or upgrade. */
export type ClientLimitName = 'connections' | 'requestsPerSecond' | 'upgradesPerMinute' | 'maxClients'

/** A client went past one of `limits.perClient`: answered 429 with `Retry-After`, before any upstream was contacted. */
export class RateLimitedError extends SockgateError {
  /** The setting that refused it. */
  readonly limit: ClientLimitName
  /** Whole seconds after which a retry would pass, as sent in `Retry-After` (at least 1). */
  readonly retryAfter: number

  constructor (clientAddress: string, limit: ClientLimitName, rule: string, retryAfter: number) {
    super('SOCKGATE_ERR_RATE_LIMITED', 429, limit === 'maxClients'
      ? `Too many clients at once: the per-client table holds limits.perClient.maxClients (${rule}) clients with work in progress, ` +
        `so ${clientAddress} was refused; retry after ${retryAfter} s. Raise maxClients if the gateway should serve more clients at once.`
      : `Too many requests from ${clientAddress}: past limits.perClient.${limit} (${rule}); retry after ${retryAfter} s. ` +
        'If this client is legitimate (many users behind one NAT, say), raise the limit.')
    this.name = 'RateLimitedError'
    this.limit = limit
    this.retryAfter = retryAfter
  }
}

/** An upgrade whose `Origin` is not in `origins`, or that has none while `requireOrigin` is set (RFC 6455 §10.2). */
export class OriginRefusedError extends SockgateError {
  constructor (origin: string | undefined) {
    super('SOCKGATE_ERR_ORIGIN', 403, origin === undefined
      ? 'Forbidden: the upgrade has no Origin header and requireOrigin is set; a client that is not a browser must send one, or turn requireOrigin off.'
      : `Forbidden: Origin ${JSON.stringify(origin)} is not in origins; if pages of that site may open WebSockets here, add it to origins.`)
    this.name = 'OriginRefusedError'
  }
}

/** All codes, for documentation checks and for users who switch on them. */
export const ERROR_CODES: readonly ErrorCode[] = Object.freeze([
  'SOCKGATE_ERR_INVALID_OPTION',
  'SOCKGATE_ERR_BAD_REQUEST',
  'SOCKGATE_ERR_BAD_UPGRADE',
  'SOCKGATE_ERR_UPGRADE_VERSION',
  'SOCKGATE_ERR_BODY_TOO_LARGE',
  'SOCKGATE_ERR_NO_ROUTE',
  'SOCKGATE_ERR_NO_UPSTREAM',
  'SOCKGATE_ERR_CLOSED',
  'SOCKGATE_ERR_UPSTREAM_CONNECT',
  'SOCKGATE_ERR_UPSTREAM_TIMEOUT',
  'SOCKGATE_ERR_UPSTREAM_PROTOCOL',
  'SOCKGATE_ERR_UPGRADE_REFUSED',
  'SOCKGATE_ERR_CLIENT_ABORTED',
  'SOCKGATE_ERR_CLIENT_TIMEOUT',
  'SOCKGATE_ERR_FORBIDDEN',
  'SOCKGATE_ERR_BODY_CONSUMED',
  'SOCKGATE_ERR_STICKY_MISS',
  'SOCKGATE_ERR_STICKY_STORE',
  'SOCKGATE_ERR_HOOK',
  'SOCKGATE_ERR_DISCOVERY',
  'SOCKGATE_ERR_CONNECT_PROTOCOL',
  'SOCKGATE_ERR_RATE_LIMITED',
  'SOCKGATE_ERR_ORIGIN',
  'SOCKGATE_ERR_PROXY_PROTOCOL',
] satisfies ErrorCode[])
