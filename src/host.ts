import { isIPv6 } from 'node:net'
import type { IncomingMessage } from 'node:http'
import { BadRequestError } from './errors.js'

/**
 * `Host` as RFC 9110 §7.2 has it: `uri-host [":" port]`, where the host is a
 * bracketed IPv6 literal or a name. Names are held to RFC 3986's unreserved
 * characters (letters, digits, `-`, `.`, `_`, `~`): DNS names never need the
 * sub-delims or percent-encoding the grammar also admits, and a `,`, `@` or
 * space is exactly what makes one Host read as another (`a.example:1@evil`).
 */
const HOST = /^(?:\[([0-9A-Fa-f:.]+)\]|[A-Za-z0-9._~-]+)(?::([0-9]{0,5}))?$/

/** True when `value` is a host name or IP literal with an optional port (at most 65535). */
export function isValidHost (value: string): boolean {
  const m = HOST.exec(value)
  if (m === null) return false
  if (m[1] !== undefined && !isIPv6(m[1])) return false
  return m[2] === undefined || m[2] === '' || Number(m[2]) <= 65_535
}

/** Host header without port, lower-cased (`App.Example.com:8080` → `app.example.com`). */
export function hostName (host: string | undefined): string {
  if (host === undefined) return ''
  if (host.startsWith('[')) {
    const end = host.indexOf(']')
    return (end === -1 ? host : host.slice(0, end + 1)).toLowerCase()
  }
  const colon = host.indexOf(':')
  return (colon === -1 ? host : host.slice(0, colon)).toLowerCase()
}

/**
 * Why the request's Host cannot be routed, or undefined when it can. HTTP/1.1
 * requires one (RFC 9112 §3.2); HTTP/1.0 may go without and routes as any
 * host. Node checks the presence for plain requests but not for upgrades.
 */
export function hostProblem (req: IncomingMessage): BadRequestError | undefined {
  const host = req.headers.host
  if (host === undefined) {
    return req.httpVersionMajor === 1 && req.httpVersionMinor === 0 ? undefined : new BadRequestError('HTTP/1.1 requires a Host header')
  }
  if (isValidHost(host)) return undefined
  const shown = host.length > 100 ? `${host.slice(0, 100)}…` : host
  return new BadRequestError(`the Host header must be a host name or IP address with an optional port (got ${JSON.stringify(shown)})`)
}
