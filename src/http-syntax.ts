/**
 * HTTP/1.1 grammar, written once: the token rule, the hop-by-hop fields,
 * comma-separated lists and message heads. The request rewriter, the
 * response filters, the upgrade checks, the balancers and the options pass
 * all read HTTP through this module. Pure: strings in, strings out.
 */

/** RFC 9110 §5.6.2: `token = 1*tchar`, tchar being a letter, a digit or one of ``!#$%&'*+-.^_`|~``. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/**
 * True when `value` is an RFC 9110 token (§5.6.2): what a field name, an
 * Upgrade protocol, a Connection option or a cookie name (RFC 6265 §4.1.1)
 * must be. Anything else could end a field or split a header.
 */
export function isToken (value: string): boolean {
  return TOKEN.test(value)
}

/**
 * Fields that describe one connection and are never relayed, in either
 * direction. RFC 9110 §7.6.1 names Connection, Proxy-Connection, Keep-Alive,
 * TE, Transfer-Encoding and Upgrade; Trailer was hop-by-hop in RFC 2616
 * §13.5.1 and is still dropped by nginx and http-proxy, because a forwarded
 * message is re-framed and its trailers are not forwarded.
 */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
])

/**
 * A field (lower-case name) that belongs to one connection: hop-by-hop by
 * RFC 9110 §7.6.1, or one of `listed`, the options that message's own
 * `Connection` named.
 */
export function isHopByHop (lower: string, listed: ReadonlySet<string> | null = null): boolean {
  return HOP_BY_HOP.has(lower) || (listed !== null && listed.has(lower))
}

/**
 * The items of a comma-separated list value (RFC 9110 §5.6.1), as sent:
 * each trimmed, empty ones dropped (`" a, ,b "` → `['a', 'b']`), since a
 * recipient must accept and ignore empty list elements. Case is kept, so
 * addresses (X-Forwarded-For) keep their spelling. Items are trimmed of
 * any whitespace, a little more than OWS (space and tab) alone.
 */
export function listItems (value: string): string[] {
  const items: string[] = []
  let start = 0
  while (start <= value.length) {
    let comma = value.indexOf(',', start)
    if (comma === -1) comma = value.length
    const item = value.slice(start, comma).trim()
    if (item !== '') items.push(item)
    start = comma + 1
  }
  return items
}

/**
 * The items of a list of case-insensitive tokens (Connection, Upgrade,
 * X-Forwarded-Proto), lower-cased: {@link listItems} with the case folded.
 */
export function listTokens (value: string): string[] {
  const items = listItems(value)
  for (let i = 0; i < items.length; i++) items[i] = (items[i] as string).toLowerCase()
  return items
}

/**
 * `header` (a comma-separated list such as Connection) names `token`,
 * case-insensitively; `token` is given in lower case. False for a missing
 * header.
 */
export function listsToken (header: string | undefined, token: string): boolean {
  return header !== undefined && listTokens(header).includes(token)
}

/**
 * Several field lines of one name are one list, joined by `", "` (RFC 9110
 * §5.3). Returns `list` with `line` (trimmed) appended, or `list` as it was
 * when `line` is empty; undefined while there is nothing at all.
 */
export function appendListValue (list: string | undefined, line: string): string | undefined {
  const value = line.trim()
  if (value === '') return list
  return list === undefined ? value : `${list}, ${value}`
}

/**
 * A message head for a raw socket: the start line, one `Name: value` line
 * per pair of `flat`, and the blank line, all CRLF-ended (RFC 9112 §2.1).
 * `flat` comes from the request rewriter or Node's parser (an upstream's
 * answer), neither of which lets CR, LF or NUL through. Characters stand for
 * bytes (latin1): write the result with the 'latin1' encoding.
 */
export function serializeHead (startLine: string, flat: readonly string[]): string {
  let head = `${startLine}\r\n`
  for (let i = 0; i + 1 < flat.length; i += 2) head += `${flat[i] as string}: ${flat[i + 1] as string}\r\n`
  return `${head}\r\n`
}

/** `head` (a serialized head, ending in the blank line) with one more field line before the blank line. */
export function addHeaderToHead (head: string, name: string, value: string): string {
  return `${head.slice(0, -2)}${name}: ${value}\r\n\r\n`
}
