import type { Balancer, PickContext } from './types.js'
import type { UpstreamServer } from '../upstream/server.js'

/**
 * Ring points per unit of weight. nginx's `hash ... consistent` (ketama) uses
 * 160, which leaves a server's share of the ring typically 10% and up to 25%
 * away from its weight (the spread shrinks as 1/sqrt(points)); 1000 brings
 * that to about 4% typical, 10% worst. The ring is only rebuilt when the
 * pool's membership or weights change, and a 5-server pool of weight 1 builds
 * in about a millisecond.
 */
export const POINTS_PER_WEIGHT = 1000

/**
 * Upper bound on the points of one ring (8 bytes each, and about 0.25 µs each
 * to build, which blocks the event loop). Pools whose weights add up to more
 * than 262 get proportionally fewer points per weight; for them, changing the
 * membership also changes every server's point count, so a little more than
 * the removed server's share of keys moves.
 */
export const MAX_RING_POINTS = 1 << 18

/**
 * sockgate's 32-bit string hash: FNV-1a over the string's UTF-16 code units
 * (each unit xored in whole), then murmur3's `fmix32` finaliser.
 *
 * FNV-1a alone barely moves the high bits when only the last character
 * changes (`10.0.0.1`, `10.0.0.2`, ...), which would bunch neighbouring keys
 * on the ring; the finaliser spreads every input bit over the output. The
 * function depends on nothing but the string, so every gateway process with
 * the same configuration builds the same ring and maps a key to the same
 * server. Changing it would remap every client: it is pinned by a test.
 */
export function hash32 (s: string): number {
  return fmix32(fnv1a(0x811c9dc5, s))
}

/** FNV-1a state `h` advanced over `s`; streaming, so a common prefix is hashed once. */
function fnv1a (h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h
}

/** murmur3's 32-bit finaliser: every input bit reaches every output bit. */
function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** A ring built for one `servers` array. */
interface Ring {
  /** Point positions, ascending. */
  points: Uint32Array
  /** `owners[i]` is the index in `servers` of the server at `points[i]`. */
  owners: Uint32Array
  /** Weights the ring was built with, to notice a weight changed in place. */
  weights: number[]
}

/**
 * Rings by `servers` array. The pool hands balancers a new array whenever its
 * membership changes, so array identity is the cache key and a dropped array
 * takes its ring with it. Shared by every hash balancer: the ring depends on
 * the servers alone, not on how keys are chosen.
 */
const rings = new WeakMap<readonly UpstreamServer[], Ring>()

/** Two to the 20: room for the URL rank below a 32-bit position in one exact float. */
const RANK_SPACE = 1 << 20

function buildRing (servers: readonly UpstreamServer[]): Ring {
  const totalWeight = servers.reduce((sum, s) => sum + Math.max(0, s.weight), 0)
  const perWeight = Math.min(POINTS_PER_WEIGHT, MAX_RING_POINTS / Math.max(1, totalWeight))

  // Points are sorted by position, then by the server's rank in URL order:
  // two points at the same position then go to the smaller URL whatever the
  // listing order, so every process agrees. Position and rank are packed into
  // one float (32 + 20 bits < 53), which a Float64Array sorts natively.
  const byUrl = servers.map((_, i) => i).sort((i, j) => {
    const a = servers[i]!.url
    const b = servers[j]!.url
    return a < b ? -1 : a > b ? 1 : i - j
  })
  // At least one point for any positive weight, so a server with a tiny
  // weight still gets some keys; a weight of 0 (or a broken one) gets none.
  const counts = servers.map((s) => s.weight > 0 ? Math.max(1, Math.round(perWeight * s.weight)) : 0)
  const all = new Float64Array(counts.reduce((sum, n) => sum + n, 0))
  let k = 0
  for (let rank = 0; rank < byUrl.length && rank < RANK_SPACE; rank++) {
    const owner = byUrl[rank]!
    // hash32(`${url}#${i}`), with the `${url}#` part hashed once.
    const base = fnv1a(0x811c9dc5, servers[owner]!.url + '#')
    for (let i = 0; i < counts[owner]!; i++) all[k++] = fmix32(fnv1a(base, String(i))) * RANK_SPACE + rank
  }
  // Servers past RANK_SPACE (a million) are left off rather than mis-packed.
  const keys = all.subarray(0, k).sort()

  const points = new Uint32Array(k)
  const owners = new Uint32Array(k)
  for (let i = 0; i < k; i++) {
    const v = keys[i]!
    const pos = Math.floor(v / RANK_SPACE)
    points[i] = pos
    owners[i] = byUrl[v - pos * RANK_SPACE]!
  }
  return { points, owners, weights: servers.map((s) => s.weight) }
}

function ringFor (servers: readonly UpstreamServer[]): Ring {
  let ring = rings.get(servers)
  if (ring !== undefined) {
    // `weight` is mutable on UpstreamServer; a handful of comparisons per pick
    // is cheaper than ever serving a ring that no longer matches the weights.
    let same = true
    for (let i = 0; i < servers.length; i++) {
      if (servers[i]!.weight !== ring.weights[i]) { same = false; break }
    }
    if (same) return ring
  }
  ring = buildRing(servers)
  rings.set(servers, ring)
  return ring
}

/** Index of the first point at or after `h`, wrapping to 0 past the last. */
function firstAtOrAfter (points: Uint32Array, h: number): number {
  let lo = 0
  let hi = points.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (points[mid]! < h) lo = mid + 1
    else hi = mid
  }
  return lo === points.length ? 0 : lo
}

/**
 * Server a key maps to on the weighted consistent-hash ring of `servers`, or
 * undefined when none is usable. Exported for the pool's failover and tests;
 * balancers go through {@link createHashBalancer}.
 *
 * The walk goes clockwise from the key's position to the first usable server,
 * so a server going down moves only its own keys, each to its ring successor.
 */
export function pickOnRing (
  servers: readonly UpstreamServer[],
  usable: (s: UpstreamServer) => boolean,
  key: string
): UpstreamServer | undefined {
  if (servers.length === 0) return undefined
  const { points, owners } = ringFor(servers)
  if (points.length === 0) return undefined
  const start = firstAtOrAfter(points, hash32(key))
  const first = servers[owners[start]!]!
  if (usable(first)) return first

  // Slow path: remember servers already refused, so that a pool with every
  // server down costs one `usable()` call per server, not one per ring point.
  const refused = new Uint8Array(servers.length)
  refused[owners[start]!] = 1
  let left = servers.length - 1
  for (let step = 1; step < points.length && left > 0; step++) {
    let i = start + step
    if (i >= points.length) i -= points.length
    const owner = owners[i]!
    if (refused[owner] === 1) continue
    const s = servers[owner]!
    if (usable(s)) return s
    refused[owner] = 1
    left--
  }
  return undefined
}

/**
 * A weighted consistent-hash balancer (nginx `hash $key consistent`): each
 * server owns `1000 × weight` points on a 32-bit ring, placed by
 * {@link hash32} of `url#i`, and a request goes to the owner of the first
 * point clockwise from the hash of `keyOf(ctx)`. Adding or removing one server
 * of N moves only about 1/N of the keys.
 *
 * `keyOf` must not throw; wrap user code before passing it in.
 */
export function createHashBalancer (keyOf: (ctx: PickContext) => string): Balancer {
  return {
    pick (servers, usable, ctx) {
      return pickOnRing(servers, usable, keyOf(ctx))
    },
  }
}
