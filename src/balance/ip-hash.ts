import { createHashBalancer } from './consistent-hash.js'
import type { Balancer } from './types.js'

/**
 * The part of a client address that ip-hash hashes.
 *
 * - IPv4, and IPv4-mapped IPv6 (`::ffff:10.0.0.1`): the whole address. nginx
 *   keeps only the first three octets, which lumps a /24 of unrelated clients
 *   (a whole carrier-grade NAT range) onto one server.
 * - IPv6: the /64 prefix, the first four hextets written in one canonical
 *   form. A host commonly rotates privacy addresses inside its /64, and it
 *   should keep its server when it does.
 *
 * Anything that does not parse as an address (a Unix socket peer, an empty
 * string) is used as it is: it still hashes to a stable server.
 */
export function ipHashKey (address: string): string {
  let a = address
  if (a.length > 7 && a.charCodeAt(0) === 58 /* : */ && a.slice(0, 7).toLowerCase() === '::ffff:' && a.includes('.', 7)) {
    a = a.slice(7)
  }
  if (!a.includes(':')) return a
  return ipv6Prefix64(a) ?? a
}

/** First four hextets of an IPv6 address, canonical (lower case, no leading zeros), or undefined. */
function ipv6Prefix64 (address: string): string | undefined {
  let a = address
  const zone = a.indexOf('%')
  if (zone !== -1) a = a.slice(0, zone)
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1)

  const gap = a.indexOf('::')
  if (gap !== a.lastIndexOf('::')) return undefined
  const head = gap === -1 ? a : a.slice(0, gap)
  const tail = gap === -1 ? '' : a.slice(gap + 2)
  const headParts = head === '' ? [] : head.split(':')
  const tailParts = tail === '' ? [] : tail.split(':')

  // An embedded IPv4 address (`64:ff9b::192.0.2.1`) fills the last two
  // hextets; it can only sit at the end, so only the count needs it.
  const last = (gap === -1 ? headParts : tailParts).at(-1)
  const v4Extra = last !== undefined && last.includes('.') ? 1 : 0
  const given = headParts.length + tailParts.length + v4Extra
  if (gap === -1 ? given !== 8 : given > 7) return undefined

  const hextets = [...headParts, ...Array(8 - given).fill('0'), ...tailParts]
  const out: string[] = []
  for (let i = 0; i < 4; i++) {
    const h = hextets[i]!
    if (!/^[0-9a-fA-F]{1,4}$/.test(h)) return undefined
    out.push(parseInt(h, 16).toString(16))
  }
  return out.join(':')
}

/**
 * ip-hash: a consistent-hash ring keyed by the client's address
 * ({@link ipHashKey}), so a client keeps its server across connections and
 * gateway processes, and losing one server of N moves only ~1/N of clients.
 * `ctx.clientAddress` is already the right-most untrusted address when
 * `trustProxy` is set.
 */
export function createIpHash (): Balancer {
  return createHashBalancer((ctx) => ipHashKey(ctx.clientAddress ?? ''))
}
