/**
 * Which peers may tell us who the client is. `trustProxy` is compiled once
 * into a predicate (the way proxy-addr's `compile()` does it, but on Node's
 * own `net.BlockList`), and `resolveClientAddress()` walks the
 * X-Forwarded-For chain from the right with it. Pure: no sockets.
 */
import { BlockList, isIP, isIPv4 } from 'node:net'
import { InvalidOptionError } from './errors.js'
import { listItems } from './http-syntax.js'

/**
 * Decides whether one hop may be believed about the hop before it.
 * Hop 0 is the socket peer, hop 1 the right-most X-Forwarded-For entry,
 * and so on leftwards.
 */
export type TrustPredicate = (address: string, hop: number) => boolean

/** Named ranges, as Express and proxy-addr accept them. */
const NAMED_RANGES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  loopback: ['127.0.0.0/8', '::1/128'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
  uniquelocal: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
})

const DIGITS = /^[0-9]{1,3}$/

const trustNothing: TrustPredicate = () => false
const trustEverything: TrustPredicate = () => true

interface Range {
  address: string
  family: 'ipv4' | 'ipv6'
  /** `undefined` for a single address. */
  prefix: number | undefined
}

/** Parses one address or CIDR; `undefined` when it is neither. Names are handled by the caller. */
function parseRange (entry: string): Range | undefined {
  const slash = entry.indexOf('/')
  const address = slash === -1 ? entry : entry.slice(0, slash)
  const version = isIP(address)
  if (version === 0) return undefined
  const family = version === 4 ? 'ipv4' : 'ipv6'
  if (slash === -1) return { address, family, prefix: undefined }
  const bits = entry.slice(slash + 1)
  if (!DIGITS.test(bits)) return undefined
  const prefix = Number(bits)
  if (prefix > (version === 4 ? 32 : 128)) return undefined
  return { address, family, prefix }
}

/**
 * Whether `entry` can appear in a `trustProxy` list: an IPv4 or IPv6 address,
 * a CIDR such as `10.0.0.0/8` or `fd00::/8`, or one of the names `loopback`,
 * `linklocal` and `uniquelocal`. Options validation uses it to name the bad entry.
 */
export function isValidTrustEntry (entry: string): boolean {
  if (typeof entry !== 'string') return false
  const trimmed = entry.trim()
  return Object.hasOwn(NAMED_RANGES, trimmed) || parseRange(trimmed) !== undefined
}

/**
 * Compiles `trustProxy` into a predicate, once:
 *
 * - `false`: trusts nothing (the default); `true`: trusts every hop;
 * - a number `n`: trusts hops `0 .. n-1`, like Express's `trust proxy` hop count;
 * - a list of addresses, CIDRs and the names `loopback`, `linklocal`, `uniquelocal`.
 *
 * IPv4 entries also match IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`),
 * which is how a dual-stack server reports IPv4 peers; `net.BlockList` does
 * that mapping itself. Throws `InvalidOptionError` naming `path` on a value it
 * cannot use.
 */
export function compileTrust (option: boolean | number | string[], path = 'trustProxy'): TrustPredicate {
  if (option === false) return trustNothing
  if (option === true) return trustEverything
  if (typeof option === 'number') {
    if (!Number.isInteger(option) || option < 0) {
      throw new InvalidOptionError(path, `must be a whole number of hops >= 0 (got ${option})`)
    }
    if (option === 0) return trustNothing
    return (_address, hop) => hop < option
  }
  if (typeof option === 'string') {
    throw new InvalidOptionError(path, `must be a list, not a string: use [${JSON.stringify(option)}] (comma-separated strings are not split)`)
  }
  if (!Array.isArray(option)) {
    throw new InvalidOptionError(path, 'must be true, false, a number of hops or a list of addresses/CIDRs')
  }
  if (option.length === 0) return trustNothing

  const list = new BlockList()
  for (let i = 0; i < option.length; i++) {
    const entry: unknown = option[i]
    if (typeof entry !== 'string' || !isValidTrustEntry(entry)) {
      throw new InvalidOptionError(`${path}[${i}]`,
        `must be an IP address, a CIDR such as '10.0.0.0/8' or 'fd00::/8', or 'loopback', 'linklocal' or 'uniquelocal' (got ${JSON.stringify(entry)})`)
    }
    const trimmed = entry.trim()
    const expanded = NAMED_RANGES[trimmed] ?? [trimmed]
    for (const text of expanded) {
      // Every entry was validated above, so parseRange cannot fail here.
      const range = parseRange(text) as Range
      if (range.prefix === undefined) list.addAddress(range.address, range.family)
      else list.addSubnet(range.address, range.prefix, range.family)
    }
  }
  return (address) => {
    const version = isIP(address)
    if (version === 4) return list.check(address, 'ipv4')
    if (version === 6) return list.check(address, 'ipv6')
    return false
  }
}

/**
 * `::ffff:192.0.2.1` → `192.0.2.1`; any other address is returned unchanged.
 * Applied to every address sockgate reports or forwards, so upstreams and
 * `ip-hash` see one spelling per IPv4 client.
 */
export function unmapAddress (address: string): string {
  if (address.length > 7 && address.charCodeAt(0) === 58 /* : */) {
    const head = address.slice(0, 7)
    if ((head === '::ffff:' || head.toLowerCase() === '::ffff:') && isIPv4(address.slice(7))) {
      return address.slice(7)
    }
  }
  return address
}

/**
 * One X-Forwarded-For entry (trimmed, not empty) as an address, or
 * `undefined` when it is not one. Proxies sometimes write
 * `[2001:db8::1]:1234` or `192.0.2.1:1234`; the brackets and port are
 * dropped so the entry can be matched.
 */
function cleanEntry (entry: string): string | undefined {
  if (isIP(entry) !== 0) return entry
  if (entry.charCodeAt(0) === 91 /* [ */) {
    const close = entry.indexOf(']')
    const inner = close === -1 ? '' : entry.slice(1, close)
    return isIP(inner) === 6 ? inner : undefined
  }
  const colon = entry.indexOf(':')
  if (colon !== -1 && colon === entry.lastIndexOf(':')) {
    const host = entry.slice(0, colon)
    if (isIPv4(host)) return host
  }
  return undefined
}

/**
 * The client's address: starting at the socket peer (hop 0) and moving
 * leftwards through `X-Forwarded-For`, the first hop that `trust` rejects.
 * An untrusted peer is the client itself, whatever it claims. If every hop is
 * trusted, the left-most entry is the client.
 *
 * Empty entries are skipped (they are not hops). An entry that is not an IP
 * address ends the walk at the last real address, so the result is always the
 * peer or an address some trusted hop reported. `::ffff:` is removed from
 * IPv4-mapped results.
 */
export function resolveClientAddress (peer: string, xForwardedFor: string | undefined, trust: TrustPredicate): string {
  let client = peer
  if (xForwardedFor === undefined || xForwardedFor === '' || !trust(peer, 0)) return unmapAddress(client)
  const entries = listItems(xForwardedFor)
  for (let i = entries.length - 1, hop = 1; i >= 0; i--, hop++) {
    const entry = cleanEntry(entries[i] as string)
    if (entry === undefined) break
    client = entry
    if (!trust(entry, hop)) break
  }
  return unmapAddress(client)
}
