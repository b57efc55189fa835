/**
 * The one request-header rewriter, shared by plain HTTP forwarding and the
 * upgrade handshake, plus the response-side hop-by-hop filter. Pure: it takes
 * Node's `req.rawHeaders` and plain values and returns a flat header list.
 *
 * Order of work for a request, which is also the order of precedence:
 * 1. hop-by-hop fields are dropped (RFC 9110 §7.6.1), with every name the
 *    client listed in `Connection`;
 * 2. forwarding fields from an untrusted peer are dropped;
 * 3. Host is chosen, then X-Forwarded-*, Forwarded and X-Real-IP are added;
 * 4. `headers.remove` applies, then `headers.set` replaces;
 * 5. upgrades get exactly `Connection: upgrade` and the client's `Upgrade`.
 *
 * An HTTP/2 request (node:http2's compat request) also has pseudo-header
 * fields (RFC 9113 §8.3): they are not sent, except `:authority`, which
 * becomes Host (§8.3.1).
 */
import { BadRequestError, InvalidOptionError } from './errors.js'
import { appendListValue, isHopByHop, isToken, listTokens } from './http-syntax.js'
import { unmapAddress } from './trust.js'
import type { HeaderOptions } from './types.js'

/** `headers` options after validation: what the rewriter reads on every request. */
export interface NormalizedHeaderOptions {
  readonly xForwarded: boolean
  readonly forwarded: boolean
  readonly xRealIp: boolean
  readonly host: Readonly<{ kind: 'preserve' } | { kind: 'upstream' } | { kind: 'fixed', value: string }>
  /** Headers to set, names in lower case, in the order given. */
  readonly set: ReadonlyArray<readonly [name: string, value: string]>
  /** The lower-case names of `set`, so the rewriter drops the client's fields of those names with one lookup. */
  readonly setNames: ReadonlySet<string>
  /** Lower-case names to remove. */
  readonly remove: ReadonlySet<string>
}

/** What the rewriter needs to know about the connection and the chosen upstream. */
export interface RewriteContext {
  /** `socket.remoteAddress` of the client connection. */
  peerAddress: string
  /** The client connection is TLS. */
  encrypted: boolean
  /** `socket.localPort`: the port this hop was reached on. */
  localPort: number
  /** The peer (hop 0) is trusted by `trustProxy`. */
  trusted: boolean
  /** The client after `trustProxy`, from `resolveClientAddress()`. */
  clientAddress: string
  /** The client's Upgrade value when this is an upgrade request, else `null`. */
  upgrade: string | null
  /** `host:port` of the chosen upstream, for `host: 'upstream'`. */
  upstreamHost: string
}

/**
 * Never removed because a peer listed them in `Connection`: without Host the
 * request is not HTTP/1.1, and without Content-Length the body would be
 * re-framed at the client's request. RFC 9110 §7.6.1 forbids listing fields
 * meant for every recipient, so a peer that does it gets them forwarded.
 */
const NOT_CONNECTION_OPTIONS: ReadonlySet<string> = new Set(['host', 'content-length', 'close'])

const EMPTY_NAMES: ReadonlySet<string> = new Set()

/** A Host value: reg-name or IP literal with an optional port (RFC 3986 §3.2.2–3.2.3). */
const HOST_VALUE = /^[A-Za-z0-9\-._~!$&'()*+,;=%:[\]]+$/
/** An nginx variable such as `$host` or `$http_upgrade`, which sockgate does not expand. */
const NGINX_VARIABLE = /^\$[a-z_][a-z0-9_]*$/

const KNOWN_OPTIONS: ReadonlySet<string> = new Set(['xForwarded', 'forwarded', 'xRealIp', 'host', 'set', 'remove'])

/** Names from other proxies, answered with the sockgate spelling. */
const RENAMED: Readonly<Record<string, string>> = Object.freeze({
  xfwd: 'xForwarded',
  xForwardedFor: 'xForwarded',
  xRealIP: 'xRealIp',
  realIp: 'xRealIp',
  changeOrigin: "host: 'upstream'",
  preserveHost: "host: 'preserve'",
})

const DEFAULT_HEADER_OPTIONS: NormalizedHeaderOptions = Object.freeze({
  xForwarded: true,
  forwarded: false,
  xRealIp: false,
  host: Object.freeze({ kind: 'preserve' as const }),
  set: Object.freeze([]),
  setNames: EMPTY_NAMES,
  remove: EMPTY_NAMES,
})

function hasCrLfNul (s: string): boolean {
  return s.includes('\r') || s.includes('\n') || s.includes('\0')
}

/** Controls other than HTAB, DEL, or characters past Latin-1: not sendable in a field value (RFC 9110 §5.5). */
function hasUnsendable (s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c > 0xff) return true
  }
  return false
}

/** A plain object (`{}` or `Object.create(null)`): not an array, a Buffer, a Date or a class instance. */
export function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function checkSetName (path: string, name: string, lower: string): void {
  if (!isToken(name)) {
    throw new InvalidOptionError(`${path}.set[${JSON.stringify(name)}]`, 'is not a valid header name (an RFC 9110 token)')
  }
  if (lower === 'host') {
    throw new InvalidOptionError(`${path}.set.${name}`, `is not allowed: use ${path}.host ('preserve', 'upstream' or a fixed value)`)
  }
  if (lower === 'connection' || lower === 'upgrade') {
    throw new InvalidOptionError(`${path}.set.${name}`,
      'is not allowed: sockgate sends Connection: upgrade and the client\'s Upgrade on upgrade requests itself')
  }
  if (isHopByHop(lower) || lower === 'content-length') {
    throw new InvalidOptionError(`${path}.set.${name}`, 'is not allowed: it belongs to the connection or the message framing, which sockgate manages')
  }
  if (lower === 'expect') {
    // The body is sent at once, so an upstream would answer 100 Continue to every request: undici fails on that.
    throw new InvalidOptionError(`${path}.set.${name}`, 'is not allowed: sockgate sends request bodies without waiting for 100 Continue, and strips a client\'s Expect')
  }
}

function checkSetValue (path: string, name: string, value: unknown): string {
  if (typeof value !== 'string') {
    throw new InvalidOptionError(`${path}.set.${name}`, `must be a string (got ${value === null ? 'null' : typeof value})`)
  }
  if (hasCrLfNul(value)) throw new InvalidOptionError(`${path}.set.${name}`, 'must not contain CR, LF or NUL')
  if (hasUnsendable(value)) {
    throw new InvalidOptionError(`${path}.set.${name}`, 'must contain only visible characters, spaces and tabs (Latin-1)')
  }
  if (NGINX_VARIABLE.test(value)) {
    throw new InvalidOptionError(`${path}.set.${name}`,
      `looks like an nginx variable (${value}), and sockgate does not expand variables: see ${path}.host, ${path}.xForwarded and ${path}.xRealIp`)
  }
  return value
}

function normalizeHost (path: string, host: unknown): NormalizedHeaderOptions['host'] {
  if (host === undefined || host === 'preserve') return DEFAULT_HEADER_OPTIONS.host
  if (host === 'upstream') return Object.freeze({ kind: 'upstream' })
  if (typeof host !== 'string' || host === '') {
    throw new InvalidOptionError(`${path}.host`, "must be 'preserve', 'upstream' or a host[:port] string")
  }
  if (hasCrLfNul(host)) throw new InvalidOptionError(`${path}.host`, 'must not contain CR, LF or NUL')
  if (!HOST_VALUE.test(host)) {
    throw new InvalidOptionError(`${path}.host`,
      `must be 'preserve', 'upstream' or a host name or address with an optional port (got ${JSON.stringify(host)})`)
  }
  return Object.freeze({ kind: 'fixed', value: host })
}

function normalizeBoolean (path: string, key: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw new InvalidOptionError(`${path}.${key}`, `must be true or false (got ${JSON.stringify(value)})`)
  return value
}

/**
 * Validates `headers` and fills the defaults (`xForwarded: true`, `forwarded: false`,
 * `xRealIp: false`, `host: 'preserve'`, nothing set or removed). Runs once, in
 * `createGateway()`; the result is frozen. Throws `InvalidOptionError` naming the
 * option path (`path`, `headers` unless nested elsewhere) and the rule broken.
 */
export function normalizeHeaderOptions (opts: HeaderOptions | undefined, path = 'headers'): NormalizedHeaderOptions {
  if (opts === undefined) return DEFAULT_HEADER_OPTIONS
  if (!isPlainObject(opts)) throw new InvalidOptionError(path, 'must be an object')
  for (const key of Object.keys(opts)) {
    if (KNOWN_OPTIONS.has(key)) continue
    const hint = RENAMED[key]
    throw new InvalidOptionError(`${path}.${key}`, hint === undefined
      ? 'is not an option (expected xForwarded, forwarded, xRealIp, host, set or remove)'
      : `is not an option: use ${path}.${hint}`)
  }

  const set: Array<readonly [string, string]> = []
  const setNames = new Set<string>()
  if (opts.set !== undefined) {
    if (!isPlainObject(opts.set)) throw new InvalidOptionError(`${path}.set`, 'must be an object of header names to values')
    for (const [name, value] of Object.entries(opts.set)) {
      const lower = name.toLowerCase()
      checkSetName(path, name, lower)
      if (setNames.has(lower)) {
        throw new InvalidOptionError(`${path}.set.${name}`, 'is given twice (header names are case-insensitive)')
      }
      setNames.add(lower)
      set.push(Object.freeze([lower, checkSetValue(path, name, value)] as const))
    }
  }

  const remove = new Set<string>()
  if (opts.remove !== undefined) {
    if (!Array.isArray(opts.remove)) throw new InvalidOptionError(`${path}.remove`, 'must be a list of header names')
    opts.remove.forEach((name: unknown, i) => {
      const at = `${path}.remove[${i}]`
      if (typeof name !== 'string' || !isToken(name)) {
        throw new InvalidOptionError(at, `is not a valid header name (an RFC 9110 token; got ${JSON.stringify(name)})`)
      }
      const lower = name.toLowerCase()
      if (lower === 'host' || lower === 'content-length') {
        throw new InvalidOptionError(at, `cannot remove ${name}: the upstream needs it to read the request`)
      }
      if (isHopByHop(lower)) {
        throw new InvalidOptionError(at, `has no effect: ${name} is hop-by-hop and is never forwarded as the client sent it`)
      }
      if (setNames.has(lower)) throw new InvalidOptionError(at, `(${name}) is also in ${path}.set; keep one of them`)
      remove.add(lower)
    })
  }

  return Object.freeze({
    xForwarded: normalizeBoolean(path, 'xForwarded', opts.xForwarded, true),
    forwarded: normalizeBoolean(path, 'forwarded', opts.forwarded, false),
    xRealIp: normalizeBoolean(path, 'xRealIp', opts.xRealIp, false),
    host: normalizeHost(path, opts.host),
    set: set.length === 0 ? DEFAULT_HEADER_OPTIONS.set : Object.freeze(set),
    setNames: setNames.size === 0 ? EMPTY_NAMES : setNames,
    remove: remove.size === 0 ? EMPTY_NAMES : remove,
  })
}

/**
 * Adds the comma-separated options of one Connection value to `listed`,
 * leaving out the ones already dropped and the ones that may not be options.
 * Returns `listed`, created on first need, so the usual values (`keep-alive`,
 * `upgrade`) create no Set.
 */
function addConnectionOptions (value: string, listed: Set<string> | null): Set<string> | null {
  for (const option of listTokens(value)) {
    if (isHopByHop(option) || NOT_CONNECTION_OPTIONS.has(option)) continue
    listed ??= new Set()
    listed.add(option)
  }
  return listed
}

/** Names of `Connection` options in a whole header list (Connection may come after the fields it names). */
function connectionOptions (rawHeaders: readonly string[]): Set<string> | null {
  let listed: Set<string> | null = null
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string
    // Only 10-character names can be "Connection": no lower-casing for the others.
    if (name.length === 10 && name.toLowerCase() === 'connection') listed = addConnectionOptions(rawHeaders[i + 1] as string, listed)
  }
  return listed
}

/** RFC 7239 §6 node: IPv6 in brackets and quotes, `unknown` when the address is not known. */
function forwardedNode (address: string): string {
  if (address === '') return 'unknown'
  return address.includes(':') ? `"[${address}]"` : address
}

/** RFC 7239 §4 value: a token as is, anything else (such as `host:port`) as a quoted-string. */
function forwardedValue (value: string): string {
  if (isToken(value)) return value
  return `"${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`
}

// Bits of `kept`: forwarding fields a trusted peer sent and that are forwarded as they are.
const KEPT_PROTO = 1
const KEPT_HOST = 2
const KEPT_PORT = 4

/**
 * Rewrites the client's `req.rawHeaders` for the upstream and returns a flat
 * `[name, value, ...]` list (undici and `serializeHead()` take it as is).
 * Passed-through fields keep their case and order. See the module comment for
 * the rules; docs/headers.md shows what an upstream receives.
 *
 * Throws `BadRequestError` if a name or value contains CR, LF or NUL, or if
 * the request has more than one Host (RFC 9112 §3.2 asks for a 400).
 */
export function rewriteRequestHeaders (rawHeaders: readonly string[], ctx: RewriteContext, opts: NormalizedHeaderOptions): string[] {
  const { trusted, upgrade } = ctx
  const remove = opts.remove
  const setNames = opts.setNames
  const listed = connectionOptions(rawHeaders)
  const out: string[] = []

  let host: string | undefined
  let hostAt = -1
  let hostFromAuthority = false
  let xffChain: string | undefined
  let forwardedChain: string | undefined
  let kept = 0

  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    let name = rawHeaders[i] as string
    const value = rawHeaders[i + 1] as string
    if (hasCrLfNul(value) || hasCrLfNul(name)) {
      throw new BadRequestError(`header ${JSON.stringify(name)} contains CR, LF or NUL`)
    }
    // No HTTP/1.1 field name starts with ':' (it is no tchar): these are HTTP/2's pseudo-headers.
    if (name.charCodeAt(0) === 0x3a) {
      if (name !== ':authority') continue
      name = 'Host'
      hostFromAuthority = true
    }
    const lower = name.toLowerCase()
    if (isHopByHop(lower, listed)) continue

    switch (lower) {
      case 'host':
        if (host !== undefined) {
          // RFC 9113 §8.3.1: a Host beside `:authority` must not differ from it (the gateway itself adds one so).
          if (hostFromAuthority && value === host) continue
          throw new BadRequestError('more than one Host header')
        }
        host = value
        if (remove.has(lower) || setNames.has(lower)) continue
        hostAt = out.length + 1
        out.push(name, value)
        continue
      case 'x-forwarded-for':
        if (!trusted) continue
        if (opts.xForwarded) {
          xffChain = appendListValue(xffChain, value)
          continue
        }
        break
      case 'forwarded':
        if (!trusted) continue
        if (opts.forwarded) {
          forwardedChain = appendListValue(forwardedChain, value)
          continue
        }
        break
      case 'x-forwarded-proto':
        if (!trusted) continue
        kept |= KEPT_PROTO
        break
      case 'x-forwarded-host':
        if (!trusted) continue
        kept |= KEPT_HOST
        break
      case 'x-forwarded-port':
        if (!trusted) continue
        kept |= KEPT_PORT
        break
      case 'x-real-ip':
        // Replaced when xRealIp is on; never believed from an untrusted peer.
        if (!trusted || opts.xRealIp) continue
        break
      case 'expect':
        // Node has already answered `100-continue`, and undici refuses to send Expect.
        if (upgrade === null) continue
        break
    }
    if (remove.has(lower) || setNames.has(lower)) continue
    out.push(name, value)
  }

  const own = (lowerName: string): boolean => !remove.has(lowerName) && !setNames.has(lowerName)

  if (hostAt !== -1 ? opts.host.kind !== 'preserve' : own('host')) {
    const value = opts.host.kind === 'fixed' ? opts.host.value : ctx.upstreamHost
    if (hasCrLfNul(value)) throw new BadRequestError('the upstream host contains CR, LF or NUL')
    if (hostAt !== -1) out[hostAt] = value
    else out.unshift('Host', value) // RFC 9112 §3.2: Host goes first.
  }

  const peer = unmapAddress(ctx.peerAddress)
  const proto = ctx.encrypted ? 'https' : 'http'
  if (hasCrLfNul(peer)) throw new BadRequestError('the peer address contains CR, LF or NUL')

  if (opts.xForwarded) {
    if (own('x-forwarded-for')) {
      const value = appendListValue(xffChain, peer)
      if (value !== undefined) out.push('X-Forwarded-For', value)
    }
    if ((kept & KEPT_PROTO) === 0 && own('x-forwarded-proto')) out.push('X-Forwarded-Proto', proto)
    if ((kept & KEPT_HOST) === 0 && host !== undefined && own('x-forwarded-host')) out.push('X-Forwarded-Host', host)
    if ((kept & KEPT_PORT) === 0 && ctx.localPort > 0 && own('x-forwarded-port')) out.push('X-Forwarded-Port', String(ctx.localPort))
  }

  if (opts.forwarded && own('forwarded')) {
    let element = `for=${forwardedNode(peer)};proto=${proto}`
    if (host !== undefined) element += `;host=${forwardedValue(host)}`
    out.push('Forwarded', appendListValue(forwardedChain, element) ?? element)
  }

  if (opts.xRealIp && own('x-real-ip')) {
    const client = unmapAddress(ctx.clientAddress)
    if (hasCrLfNul(client)) throw new BadRequestError('the client address contains CR, LF or NUL')
    if (client !== '') out.push('X-Real-IP', client)
  }

  for (const [name, value] of opts.set) out.push(name, value)

  if (upgrade !== null) {
    if (hasCrLfNul(upgrade)) throw new BadRequestError('header "Upgrade" contains CR, LF or NUL')
    out.push('Connection', 'upgrade', 'Upgrade', upgrade)
  }
  return out
}

/**
 * Copies an upstream's response headers (lower-case names, arrays for repeated
 * fields, as undici gives them) without the hop-by-hop ones: the same list as
 * for requests plus every name in the response's own `Connection`. Arrays such
 * as `set-cookie` are kept as arrays. The result has no prototype, so a field
 * named `__proto__` is an ordinary key.
 */
export function filterResponseHeaders (headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  let listed: Set<string> | null = null
  const connection = headers.connection
  if (typeof connection === 'string') listed = addConnectionOptions(connection, listed)
  else if (Array.isArray(connection)) for (const value of connection) listed = addConnectionOptions(value, listed)

  const out: Record<string, string | string[]> = Object.create(null)
  for (const name of Object.keys(headers)) {
    const value = headers[name]
    if (value === undefined || isHopByHop(name.toLowerCase(), listed)) continue
    out[name] = value
  }
  return out
}

/**
 * The same filter for a raw `[name, value, ...]` list, as Node's parser
 * gives it (`rawHeaders`): for an answer relayed on a raw socket, such as an
 * upstream's refusal of an upgrade.
 */
export function filterRawResponseHeaders (raw: readonly string[]): string[] {
  const listed = connectionOptions(raw)
  const out: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string
    if (!isHopByHop(name.toLowerCase(), listed)) out.push(name, raw[i + 1] as string)
  }
  return out
}

/**
 * The request's headers as earlier middleware left them, as a flat
 * `[name, value, ...]` list for {@link rewriteRequestHeaders}. Node parses
 * `rawHeaders` into `req.headers` once; an auth middleware may then add,
 * change or delete fields there, and what it did is what the upstream gets.
 * A field still as Node parsed it keeps its spelling, order and repeats; a
 * changed one takes its new value(s) at its first place; a deleted one goes;
 * an added one comes last. When nothing changed (the usual case) `rawHeaders`
 * itself is returned, with no allocation.
 */
export function headersAsEdited (rawHeaders: readonly string[], headers: Readonly<Record<string, string | string[] | number | undefined>>): readonly string[] {
  let same = true
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (headers[(rawHeaders[i] as string).toLowerCase()] !== rawHeaders[i + 1]) {
      same = false
      break
    }
  }
  if (same) {
    let fields = 0
    for (const name in headers) if (headers[name] !== undefined) fields++
    // Equal counts with every raw field matching: no field was added (repeated names would have differed above).
    if (fields * 2 === rawHeaders.length) return rawHeaders
  }

  const raw = new Map<string, string[]>()
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const lower = (rawHeaders[i] as string).toLowerCase()
    const values = raw.get(lower)
    if (values === undefined) raw.set(lower, [rawHeaders[i + 1] as string])
    else values.push(rawHeaders[i + 1] as string)
  }
  const out: string[] = []
  const replaced = new Set<string>()
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string
    const lower = name.toLowerCase()
    const current = headers[lower]
    if (current === undefined || replaced.has(lower)) continue
    if (asParsed(current, raw.get(lower) as string[])) {
      out.push(name, rawHeaders[i + 1] as string)
      continue
    }
    replaced.add(lower)
    pushValues(out, name, current)
  }
  for (const lower in headers) {
    const current = headers[lower]
    if (current !== undefined && !raw.has(lower)) pushValues(out, lower, current)
  }
  return out
}

/** `current` is what Node makes of `values`: the first of them, or all joined (`, `, or `; ` for Cookie), or the list (Set-Cookie). */
function asParsed (current: string | string[] | number, values: readonly string[]): boolean {
  if (Array.isArray(current)) return current.length === values.length && current.every((v, i) => v === values[i])
  return current === values[0] || current === values.join(', ') || current === values.join('; ')
}

function pushValues (out: string[], name: string, value: string | string[] | number): void {
  if (Array.isArray(value)) for (const v of value) out.push(name, v)
  else out.push(name, String(value))
}
