/**
 * The PROXY protocol header a TCP load balancer writes before the client's
 * bytes (HAProxy's proxy-protocol.txt, versions 1 and 2): who the client is,
 * as the balancer saw it. Pure: it reads bytes, never a socket. The reader
 * of connections is proxy-connections.ts.
 */
import { isIPv4, isIPv6 } from 'node:net'

/** A proxied TCP connection, as the balancer saw it. */
export interface ProxiedConnection {
  readonly command: 'proxy'
  readonly version: 1 | 2
  readonly family: 'IPv4' | 'IPv6'
  readonly sourceAddress: string
  readonly sourcePort: number
  readonly destinationAddress: string
  readonly destinationPort: number
}

/** What a complete header says. */
export type ProxyHeader =
  /** A proxied TCP connection: its source is the client. */
  | ProxiedConnection
  /** The balancer speaking for itself (v2 LOCAL, its health checks): the peer is the client. */
  | { readonly command: 'local', readonly version: 2 }
  /** A connection the balancer cannot describe (v1 UNKNOWN; v2 UNSPEC, UNIX, UDP): the peer is the client. */
  | { readonly command: 'unknown', readonly version: 1 | 2 }

/** Where the bytes read so far stand. `length` is the header's size: what follows it is the client's. */
export type ProxyHeaderParse =
  | { readonly state: 'more' }
  | { readonly state: 'absent' }
  | { readonly state: 'invalid', readonly reason: string }
  | { readonly state: 'done', readonly header: ProxyHeader, readonly length: number }

/** Longest v1 line, CRLF included (the spec's own bound). */
export const V1_MAX_LENGTH = 107

/**
 * Longest v2 header accepted: the 16 fixed bytes, the addresses and TLVs.
 * Balancers send a few dozen bytes of TLVs (AWS's endpoint id, Azure's link
 * id, a TLS summary); the format allows 64 KiB, which no pending
 * connection may hold.
 */
export const V2_MAX_LENGTH = 4096

const V1_PREFIX = Buffer.from('PROXY ', 'latin1')
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const V2_FIXED = 16
const PORT = /^(0|[1-9][0-9]{0,4})$/

const MORE: ProxyHeaderParse = Object.freeze({ state: 'more' })
const ABSENT: ProxyHeaderParse = Object.freeze({ state: 'absent' })

/** Whether `bytes` begins with (a first part of) `prefix`: true, false, or undefined when too short to say. */
function startsWith (bytes: Buffer, prefix: Buffer): boolean | undefined {
  const n = Math.min(bytes.length, prefix.length)
  if (bytes.compare(prefix, 0, n, 0, n) !== 0) return false
  return n === prefix.length ? true : undefined
}

/**
 * Whether the first bytes of a connection are a PROXY header: `'v1'`,
 * `'v2'`, `'none'`, or `'more'` while they are a first part of both
 * signatures. No HTTP request or TLS handshake starts like either, so a
 * few bytes always tell.
 */
export function proxyHeaderVersion (bytes: Buffer): 'v1' | 'v2' | 'none' | 'more' {
  const v1 = startsWith(bytes, V1_PREFIX)
  if (v1 === true) return 'v1'
  const v2 = startsWith(bytes, V2_SIGNATURE)
  if (v2 === true) return 'v2'
  return v1 === false && v2 === false ? 'none' : 'more'
}

/**
 * Parse the PROXY header at the start of `bytes`, everything a connection
 * has sent so far: call it again with more bytes while it answers
 * `'more'`. Never waits past the size bounds ({@link V1_MAX_LENGTH},
 * {@link V2_MAX_LENGTH}): a longer header is `'invalid'`.
 */
export function parseProxyHeader (bytes: Buffer): ProxyHeaderParse {
  switch (proxyHeaderVersion(bytes)) {
    case 'v1': return parseV1(bytes)
    case 'v2': return parseV2(bytes)
    case 'none': return ABSENT
    default: return MORE
  }
}

function invalid (reason: string): ProxyHeaderParse {
  return { state: 'invalid', reason }
}

/** `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` or `PROXY UNKNOWN ...\r\n`, single spaces. */
function parseV1 (bytes: Buffer): ProxyHeaderParse {
  const lf = bytes.subarray(0, V1_MAX_LENGTH).indexOf(0x0a)
  if (lf === -1) return bytes.length >= V1_MAX_LENGTH ? invalid(`a v1 line must end with CRLF within ${V1_MAX_LENGTH} bytes`) : MORE
  if (bytes[lf - 1] !== 0x0d) return invalid('a v1 line must end with CRLF')
  const line = bytes.toString('latin1', 0, lf - 1)
  const length = lf + 1
  const fields = line.split(' ')
  // UNKNOWN may carry anything after it, which the receiver ignores.
  if (fields[1] === 'UNKNOWN') return { state: 'done', header: { command: 'unknown', version: 1 }, length }
  if (fields[1] !== 'TCP4' && fields[1] !== 'TCP6') return invalid(`unknown v1 protocol ${JSON.stringify(fields[1] ?? '')} (expected TCP4, TCP6 or UNKNOWN)`)
  if (fields.length !== 6) return invalid('a v1 TCP line must be PROXY, the protocol, two addresses and two ports, single-spaced')
  const [, proto, source, destination, sourcePort, destinationPort] = fields as [string, string, string, string, string, string]
  const isAddress = proto === 'TCP4' ? isIPv4 : isIPv6
  if (!isAddress(source) || !isAddress(destination)) return invalid(`the addresses of a v1 ${proto} line must be ${proto === 'TCP4' ? 'IPv4' : 'IPv6'}`)
  const ports = [sourcePort, destinationPort].map((p) => PORT.test(p) ? Number(p) : NaN)
  if (ports.some((p) => !(p <= 65535))) return invalid('the ports of a v1 line must be decimal numbers from 0 to 65535')
  return {
    state: 'done',
    header: {
      command: 'proxy',
      version: 1,
      family: proto === 'TCP4' ? 'IPv4' : 'IPv6',
      sourceAddress: source,
      sourcePort: ports[0]!,
      destinationAddress: destination,
      destinationPort: ports[1]!,
    },
    length,
  }
}

/** The 12-byte signature, version and command, family and transport, a length, then addresses and TLVs. */
function parseV2 (bytes: Buffer): ProxyHeaderParse {
  if (bytes.length < V2_FIXED) return MORE
  const versionCommand = bytes[12]!
  if (versionCommand >> 4 !== 2) return invalid(`unsupported v2 version ${versionCommand >> 4}`)
  const command = versionCommand & 0x0f
  if (command > 1) return invalid(`unknown v2 command ${command} (expected LOCAL or PROXY)`)
  const length = V2_FIXED + bytes.readUInt16BE(14)
  if (length > V2_MAX_LENGTH) return invalid(`a v2 header of ${length} bytes is longer than the ${V2_MAX_LENGTH} accepted`)
  if (bytes.length < length) return MORE
  // LOCAL: the balancer's own connection; whatever the address block says is ignored.
  if (command === 0) return { state: 'done', header: { command: 'local', version: 2 }, length }
  const family = bytes[13]!
  const block = bytes.subarray(V2_FIXED, length)
  switch (family) {
    case 0x11: // TCP over IPv4
      if (block.length < 12) return invalid('a v2 TCP over IPv4 header needs 12 bytes of addresses')
      return proxied(length, 'IPv4', ipv4(block, 0), block.readUInt16BE(8), ipv4(block, 4), block.readUInt16BE(10))
    case 0x21: // TCP over IPv6
      if (block.length < 36) return invalid('a v2 TCP over IPv6 header needs 36 bytes of addresses')
      return proxied(length, 'IPv6', ipv6(block, 0), block.readUInt16BE(32), ipv6(block, 16), block.readUInt16BE(34))
    // UNSPEC, UDP and UNIX sockets: valid, but no TCP client to name, so the peer stands for itself (as the spec allows).
    case 0x00: case 0x12: case 0x22: case 0x31: case 0x32:
      return { state: 'done', header: { command: 'unknown', version: 2 }, length }
    default:
      return invalid(`unknown v2 address family and transport 0x${family.toString(16).padStart(2, '0')}`)
  }
}

function proxied (length: number, family: 'IPv4' | 'IPv6', sourceAddress: string, sourcePort: number,
  destinationAddress: string, destinationPort: number): ProxyHeaderParse {
  return { state: 'done', header: { command: 'proxy', version: 2, family, sourceAddress, sourcePort, destinationAddress, destinationPort }, length }
}

function ipv4 (bytes: Buffer, at: number): string {
  return `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}`
}

/**
 * Sixteen bytes as RFC 5952 text: lower case, no leading zeros, the longest
 * run of two or more zero groups as `::`; an IPv4-mapped address as
 * `::ffff:a.b.c.d`, the spelling Node gives dual-stack peers (and which the
 * gateway reports as plain IPv4).
 */
function ipv6 (bytes: Buffer, at: number): string {
  const groups: number[] = []
  for (let i = 0; i < 8; i++) groups.push(bytes.readUInt16BE(at + 2 * i))
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return `::ffff:${ipv4(bytes, at + 12)}`
  let bestStart = -1
  let bestLength = 1
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLength) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  const text = (from: number, to: number): string => groups.slice(from, to).map((g) => g.toString(16)).join(':')
  if (bestStart === -1) return text(0, 8)
  return `${text(0, bestStart)}::${text(bestStart + bestLength, 8)}`
}
