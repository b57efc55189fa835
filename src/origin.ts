/**
 * The `origins` and `requireOrigin` options: which web pages may open a
 * WebSocket through the gateway. A browser sends cookies with a cross-site
 * WebSocket handshake and the server must check `Origin` itself (RFC 6455
 * §10.2), or any page can talk to the upstream as the logged-in user
 * (cross-site WebSocket hijacking). Compiled once into a predicate, the way
 * `trustProxy` is; pure, no sockets.
 */
import { InvalidOptionError } from './errors.js'

/** Whether an upgrade with this `Origin` header (undefined: none) may go on. */
export type OriginCheck = (origin: string | undefined) => boolean

/** `scheme://host[:port]` and nothing else: what a browser sends (RFC 6454 §6.2), and what an entry must be. */
const ORIGIN_SYNTAX = /^(https?):\/\/([^/?#@\\\s]+)$/i

interface ParsedOrigin {
  scheme: string
  hostname: string
  /** Empty for the scheme's default port. */
  port: string
  /** Lower case, default port dropped: `https://app.example.com`. */
  serialized: string
}

/**
 * An origin in the one spelling compared: scheme and host lower-cased
 * (IDN hosts in punycode), the scheme's default port dropped, so
 * `HTTPS://App.Example.com:443` is `https://app.example.com`. Undefined for
 * anything that is not an http(s) origin (a path, credentials, several
 * values joined by a comma).
 */
function parseOrigin (text: string): ParsedOrigin | undefined {
  if (!ORIGIN_SYNTAX.test(text)) return undefined
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return undefined
  }
  return { scheme: url.protocol.slice(0, -1), hostname: url.hostname, port: url.port, serialized: url.origin }
}

/** A `https://*.example.com` entry: any name below the suffix, with that scheme and port. */
interface Wildcard {
  scheme: string
  /** `.example.com` */
  suffix: string
  port: string
}

const EXAMPLE = "such as 'https://app.example.com' or 'https://*.example.com'"

/**
 * Compile `origins` and `requireOrigin` into the check upgrades go through,
 * or null when `origins` is not set (every origin passes, as before).
 * Entries are origins (`https://app.example.com`, `http://localhost:3000`),
 * `https://*.example.com` for any sub-domain of any depth (not
 * `example.com` itself), or `'null'`, the opaque origin of sandboxed
 * frames and `file:` pages, which only then passes. Throws
 * `InvalidOptionError` naming the entry at fault.
 */
export function compileOrigins (origins: unknown, requireOrigin: unknown): OriginCheck | null {
  if (requireOrigin !== undefined && typeof requireOrigin !== 'boolean') throw new InvalidOptionError('requireOrigin', 'must be a boolean')
  if (origins === undefined) {
    if (requireOrigin === true) throw new InvalidOptionError('requireOrigin', 'needs an origins list: it refuses upgrades without Origin, and only origins says which to accept')
    return null
  }
  if (!Array.isArray(origins) || origins.length === 0) {
    throw new InvalidOptionError('origins', `must be a non-empty list of origins ${EXAMPLE} (leave it out to accept every origin)`)
  }
  const exact = new Set<string>()
  const wildcards: Wildcard[] = []
  for (const [i, entry] of (origins as unknown[]).entries()) {
    const path = `origins[${i}]`
    if (typeof entry !== 'string') throw new InvalidOptionError(path, `must be a string ${EXAMPLE}`)
    if (entry === 'null') {
      exact.add('null')
      continue
    }
    if (entry.trim() === '*') throw new InvalidOptionError(path, "may not be '*': leave origins out to accept every origin")
    const wild = /^(https?):\/\/\*\.(.*)$/i.exec(entry)
    const parsed = parseOrigin(wild === null ? entry : `${wild[1]!}://${wild[2]!}`)
    if (parsed === undefined) throw new InvalidOptionError(path, entryProblem(entry))
    if (parsed.hostname.includes('*')) throw new InvalidOptionError(path, `may use * only as the whole first label, as in 'https://*.example.com' (got ${JSON.stringify(entry)})`)
    if (wild === null) exact.add(parsed.serialized)
    else wildcards.push({ scheme: parsed.scheme, suffix: `.${parsed.hostname}`, port: parsed.port })
  }
  const require = requireOrigin === true
  return (origin) => {
    if (origin === undefined) return !require
    // What browsers send is already in the compared spelling: most upgrades stop here.
    if (exact.has(origin)) return true
    const parsed = parseOrigin(origin)
    if (parsed === undefined) return false
    if (exact.has(parsed.serialized)) return true
    return wildcards.some((w) => w.scheme === parsed.scheme && w.port === parsed.port && parsed.hostname.endsWith(w.suffix))
  }
}

/** Why an entry is not an origin, for the option error. */
function entryProblem (entry: string): string {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(entry)?.[1]
  if (scheme !== undefined && !/^https?$/i.test(scheme)) {
    return `must use http: or https: (got ${scheme}:); browsers send the origin of the page, such as 'https://app.example.com'`
  }
  return `must be an origin ${EXAMPLE}: a scheme, a host and an optional port, without a path (not even '/'), query or credentials ` +
    `(got ${JSON.stringify(entry)})`
}
