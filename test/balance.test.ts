import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { UpstreamServer } from '../src/upstream/server.js'
import { createRoundRobin } from '../src/balance/round-robin.js'
import { createLeastConn } from '../src/balance/least-conn.js'
import { createRandomTwo } from '../src/balance/random-two.js'
import { createHashBalancer, hash32, pickOnRing } from '../src/balance/consistent-hash.js'
import { createIpHash, ipHashKey } from '../src/balance/ip-hash.js'
import { createBalancer } from '../src/balance/index.js'
import type { Balancer, PickContext } from '../src/balance/types.js'

function server (url: string, weight = 1): UpstreamServer {
  return new UpstreamServer({ url, name: null, weight, backup: false, down: false, maxConns: 0 })
}

function pool (weights: number[]): UpstreamServer[] {
  return weights.map((w, i) => server(`http://10.0.0.${i + 1}:5000`, w))
}

function ctx (clientAddress: string, req: Partial<IncomingMessage> = {}): PickContext {
  return { req: req as IncomingMessage, clientAddress, now: 0 }
}

const always = (): boolean => true

function pickUrl (b: Balancer, servers: readonly UpstreamServer[], c = ctx('127.0.0.1')): string | undefined {
  return b.pick(servers, always, c)?.url
}

/** Counts per server url over `n` picks. */
function tally (b: Balancer, servers: readonly UpstreamServer[], n: number): Map<string, number> {
  const counts = new Map<string, number>(servers.map((s) => [s.url, 0]))
  for (let i = 0; i < n; i++) {
    const s = b.pick(servers, always, ctx('127.0.0.1'))
    assert.ok(s)
    counts.set(s.url, counts.get(s.url)! + 1)
  }
  return counts
}

/** Asserts every server's count is within `tolerance` (a fraction of its expected count) of its weighted share of `n`. */
function assertShares (counts: Map<string, number>, servers: readonly UpstreamServer[], n: number, tolerance: number): void {
  const total = servers.reduce((sum, s) => sum + s.weight, 0)
  for (const s of servers) {
    const expected = n * s.weight / total
    const got = counts.get(s.url)!
    assert.ok(Math.abs(got - expected) <= tolerance * expected,
      `${s.url} (weight ${s.weight}) got ${got}, expected ${expected} ± ${tolerance * 100}%`)
  }
}

/**
 * Asserts every server's share of `n` picks is within `points` (absolute, 0.05 = five percentage points)
 * of its weight's share. For sampled picks, where a relative bound on a small share would be noise.
 */
function assertSharePoints (counts: Map<string, number>, servers: readonly UpstreamServer[], n: number, points: number): void {
  const total = servers.reduce((sum, s) => sum + s.weight, 0)
  for (const s of servers) {
    const expected = s.weight / total
    const got = counts.get(s.url)! / n
    assert.ok(Math.abs(got - expected) <= points, `${s.url} (weight ${s.weight}) got ${got}, expected ${expected} ± ${points}`)
  }
}

/** mulberry32: a small seeded generator, so random-two tests are deterministic. */
function seeded (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `count` distinct IPv4 addresses spread over 10.0.0.0/8. */
function addresses (count: number): string[] {
  const out: string[] = []
  for (let i = 0; i < count; i++) {
    const n = i * 2654435761 % 16777216
    out.push(`10.${n >>> 16}.${(n >>> 8) & 255}.${n & 255}`)
  }
  assert.equal(new Set(out).size, count)
  return out
}

// ---------------------------------------------------------------- round-robin

test('round-robin: weights 5:1:1 interleave without bursts', () => {
  const servers = [server('http://a:1', 5), server('http://b:1', 1), server('http://c:1', 1)]
  const rr = createRoundRobin()
  const seq = Array.from({ length: 14 }, () => pickUrl(rr, servers)!.slice(7, 8)).join('')
  assert.equal(seq, 'aabacaa' + 'aabacaa')
})

test('round-robin: 7000 picks split within 5% of the weights', () => {
  const servers = pool([5, 1, 1])
  assertShares(tally(createRoundRobin(), servers, 7000), servers, 7000, 0.05)
})

test('round-robin: skips unusable servers', () => {
  const servers = pool([1, 1, 1])
  const rr = createRoundRobin()
  const down = servers[1]!
  for (let i = 0; i < 30; i++) assert.notEqual(rr.pick(servers, (s) => s !== down, ctx('1.1.1.1')), down)
})

test('round-robin: returns undefined when no server is usable', () => {
  assert.equal(createRoundRobin().pick(pool([1, 2]), () => false, ctx('1.1.1.1')), undefined)
})

// ---------------------------------------------------------------- least-conn

test('least-conn: picks the server with the fewest active connections per unit of weight', () => {
  const [a, b, c] = pool([2, 1, 1]) as [UpstreamServer, UpstreamServer, UpstreamServer]
  a.activeTunnels = 3 // 1.5 per weight
  b.activeTunnels = 2 // 2
  c.activeRequests = 1 // 1
  const lc = createLeastConn()
  assert.equal(lc.pick([a, b, c], always, ctx('1.1.1.1')), c)
  c.activeRequests = 4 // 4
  assert.equal(lc.pick([a, b, c], always, ctx('1.1.1.1')), a)
})

test('least-conn: breaks ties by weighted round-robin', () => {
  const servers = [server('http://a:1', 2), server('http://b:1', 1)]
  const lc = createLeastConn()
  const seq = Array.from({ length: 6 }, () => pickUrl(lc, servers)!.slice(7, 8)).join('')
  assert.equal(seq, 'aba' + 'aba')
})

test('least-conn: round-robins only among the tied servers', () => {
  const [a, b, c] = pool([1, 1, 1]) as [UpstreamServer, UpstreamServer, UpstreamServer]
  a.activeTunnels = 5
  const lc = createLeastConn()
  const picks = Array.from({ length: 6 }, () => lc.pick([a, b, c], always, ctx('1.1.1.1')))
  assert.deepEqual(picks, [b, c, b, c, b, c])
})

test('least-conn: treats loads equal per weight as a tie', () => {
  // 1/3 and 2/6 are the same load; the heavier server wins the first tie-break.
  const [a, b] = pool([3, 6]) as [UpstreamServer, UpstreamServer]
  a.activeTunnels = 1
  b.activeTunnels = 2
  const lc = createLeastConn()
  const picks = Array.from({ length: 3 }, () => lc.pick([a, b], always, ctx('1.1.1.1')))
  assert.deepEqual(picks, [b, a, b])
})

test('least-conn: skips unusable servers and returns undefined when none is usable', () => {
  const [a, b] = pool([1, 1]) as [UpstreamServer, UpstreamServer]
  b.activeTunnels = 9
  const lc = createLeastConn()
  assert.equal(lc.pick([a, b], (s) => s !== a, ctx('1.1.1.1')), b)
  assert.equal(lc.pick([a, b], () => false, ctx('1.1.1.1')), undefined)
})

// ---------------------------------------------------------------- random-two

test('random-two: 7000 picks of idle servers follow the weights within 2 percentage points', () => {
  // The sampling error of a 1/7 share over 7000 picks is about 0.4 points, so
  // 2 points holds for any seed while still catching a draw that ignores weights.
  const servers = pool([5, 1, 1])
  assertSharePoints(tally(createRandomTwo(seeded(42)), servers, 7000), servers, 7000, 0.02)
})

test('random-two: of the two servers drawn takes the one with fewer active per weight', () => {
  const [a, b, c] = pool([1, 1, 1]) as [UpstreamServer, UpstreamServer, UpstreamServer]
  a.activeTunnels = 2
  b.activeTunnels = 1
  c.activeTunnels = 0
  // Draws: 0 → a; then 0 among the rest → b. c, the least loaded, was not drawn.
  const draws = [0, 0]
  const r2 = createRandomTwo(() => draws.shift()!)
  assert.equal(r2.pick([a, b, c], always, ctx('1.1.1.1')), b)
})

test('random-two: a tie goes to the first server drawn', () => {
  const [a, b] = pool([1, 1]) as [UpstreamServer, UpstreamServer]
  // 0.75 of a total weight of 2 lands on b; b is then drawn first.
  const draws = [0.75, 0]
  const r2 = createRandomTwo(() => draws.shift()!)
  assert.equal(r2.pick([a, b], always, ctx('1.1.1.1')), b)
})

test('random-two: never draws the same server twice', () => {
  const [a, b] = pool([1, 1]) as [UpstreamServer, UpstreamServer]
  b.activeTunnels = 1
  // The second draw of 0 would be a again if a were not excluded.
  const draws = [0.75, 0]
  const r2 = createRandomTwo(() => draws.shift()!)
  assert.equal(r2.pick([a, b], always, ctx('1.1.1.1')), a)
})

test('random-two: a single usable server is picked without drawing', () => {
  const [a, b] = pool([1, 1]) as [UpstreamServer, UpstreamServer]
  const r2 = createRandomTwo(() => { throw new Error('should not draw') })
  assert.equal(r2.pick([a, b], (s) => s === b, ctx('1.1.1.1')), b)
  assert.equal(r2.pick([a, b], () => false, ctx('1.1.1.1')), undefined)
})

test('random-two: never returns an unusable server', () => {
  const servers = pool([1, 1, 1, 1])
  const r2 = createRandomTwo(seeded(7))
  for (let i = 0; i < 200; i++) {
    const s = r2.pick(servers, (x) => x !== servers[0] && x !== servers[2], ctx('1.1.1.1'))
    assert.ok(s === servers[1] || s === servers[3])
  }
})

// ---------------------------------------------------------------- consistent hash / ip-hash

test('hash32: gives the same values in every process', () => {
  // Pinned: changing the hash would move every ip-hash client to another server.
  assert.deepEqual(['', 'a', '10.0.0.1', 'http://127.0.0.1:5001#0'].map(hash32),
    [0xab3e7c0b, 0x1a80b1b3, 0xaebc85ae, 0xa5ff2283])
})

test('ip-hash: spreads 10,000 addresses within 5% of equal shares over 5 servers', () => {
  const servers = pool([1, 1, 1, 1, 1])
  const ih = createIpHash()
  const counts = new Map<string, number>(servers.map((s) => [s.url, 0]))
  for (const ip of addresses(10_000)) {
    const url = pickUrl(ih, servers, ctx(ip))!
    counts.set(url, counts.get(url)! + 1)
  }
  assertShares(counts, servers, 10_000, 0.05)
})

test('ip-hash: shares follow unequal weights within 10%', () => {
  const servers = pool([5, 3, 1, 1])
  const ih = createIpHash()
  const counts = new Map<string, number>(servers.map((s) => [s.url, 0]))
  for (const ip of addresses(10_000)) {
    const url = pickUrl(ih, servers, ctx(ip))!
    counts.set(url, counts.get(url)! + 1)
  }
  assertShares(counts, servers, 10_000, 0.10)
})

test('ip-hash: removing one of five servers remaps at most 25% of addresses, only the removed server\'s', () => {
  const servers = pool([1, 1, 1, 1, 1])
  const fewer = servers.filter((_, i) => i !== 2)
  const removed = servers[2]!.url
  const ih = createIpHash()
  let moved = 0
  for (const ip of addresses(10_000)) {
    const before = pickUrl(ih, servers, ctx(ip))
    const after = pickUrl(ih, fewer, ctx(ip))
    if (before !== after) {
      moved++
      assert.equal(before, removed, `${ip} moved off ${before}, which is still there`)
    }
  }
  assert.ok(moved <= 2500, `${moved} of 10000 addresses moved`)
})

test('ip-hash: a ring built from the same config in another instance maps every key to the same url', () => {
  const first = pool([5, 1, 2, 1])
  const second = pool([5, 1, 2, 1])
  const a = createIpHash()
  const b = createIpHash()
  for (const ip of addresses(2000)) assert.equal(pickUrl(b, second, ctx(ip)), pickUrl(a, first, ctx(ip)))
})

test('ip-hash: the mapping does not depend on the order servers are listed in', () => {
  const servers = pool([2, 1, 1, 3])
  const reversed = [...servers].reverse()
  const ih = createIpHash()
  for (const ip of addresses(2000)) assert.equal(pickUrl(ih, reversed, ctx(ip)), pickUrl(ih, servers, ctx(ip)))
})

test('ip-hash: a down server\'s clients move and every other client stays', () => {
  const servers = pool([1, 1, 1, 1])
  const down = servers[1]!
  const ih = createIpHash()
  for (const ip of addresses(2000)) {
    const before = ih.pick(servers, always, ctx(ip))
    const after = ih.pick(servers, (s) => s !== down, ctx(ip))
    assert.notEqual(after, down)
    if (before !== down) assert.equal(after, before)
  }
})

test('ip-hash: returns undefined when no server is usable, asking each server once', () => {
  const servers = pool([3, 3, 3])
  const asked = new Map<UpstreamServer, number>()
  const s = createIpHash().pick(servers, (x) => { asked.set(x, (asked.get(x) ?? 0) + 1); return false }, ctx('10.1.2.3'))
  assert.equal(s, undefined)
  assert.deepEqual([...asked.values()], [1, 1, 1])
})

test('ip-hash: returns undefined for an empty pool', () => {
  assert.equal(createIpHash().pick([], always, ctx('10.1.2.3')), undefined)
})

test('ip-hash: an IPv4-mapped IPv6 address hashes as the IPv4 address', () => {
  assert.equal(ipHashKey('::ffff:192.0.2.7'), '192.0.2.7')
  assert.equal(ipHashKey('::FFFF:192.0.2.7'), '192.0.2.7')
  const servers = pool([1, 1, 1])
  const ih = createIpHash()
  assert.equal(pickUrl(ih, servers, ctx('::ffff:192.0.2.7')), pickUrl(ih, servers, ctx('192.0.2.7')))
})

test('ip-hash: IPv6 addresses in the same /64 share a server', () => {
  const servers = pool([1, 1, 1, 1, 1])
  const ih = createIpHash()
  const home = pickUrl(ih, servers, ctx('2001:db8:0:1::1'))
  for (const ip of ['2001:db8:0:1:aaaa:bbbb:cccc:dddd', '2001:0DB8:0000:0001::2', '2001:db8::1:ffff:0:0:9']) {
    assert.equal(pickUrl(ih, servers, ctx(ip)), home, ip)
  }
})

test('ip-hash: the /64 key expands :: and ignores case, leading zeros and zone', () => {
  assert.equal(ipHashKey('2001:db8::1'), '2001:db8:0:0')
  assert.equal(ipHashKey('2001:0DB8:0:0:1:2:3:4'), '2001:db8:0:0')
  assert.equal(ipHashKey('::1'), '0:0:0:0')
  assert.equal(ipHashKey('fe80::1%eth0'), 'fe80:0:0:0')
  assert.equal(ipHashKey('64:ff9b::192.0.2.1'), '64:ff9b:0:0')
  assert.equal(ipHashKey('1:2:3:4:5:6:192.0.2.1'), '1:2:3:4')
  assert.notEqual(ipHashKey('2001:db8:0:1::1'), ipHashKey('2001:db8:0:2::1'))
})

test('ip-hash: an address that does not parse is used whole', () => {
  assert.equal(ipHashKey(''), '')
  assert.equal(ipHashKey('not:an:address::x::'), 'not:an:address::x::')
  assert.equal(createIpHash().pick(pool([1, 1]), always, ctx(''))?.url.startsWith('http://10.0.0.'), true)
})

test('consistent-hash: a new servers array gets its own ring', () => {
  const servers = pool([1, 1])
  const more = [...servers, server('http://10.0.0.9:5000', 1)]
  const hb = createHashBalancer((c) => c.clientAddress)
  const seen = new Set<string>()
  for (const ip of addresses(300)) seen.add(pickUrl(hb, more, ctx(ip))!)
  assert.ok(seen.has('http://10.0.0.9:5000'))
  for (const ip of addresses(300)) assert.notEqual(pickUrl(hb, servers, ctx(ip)), 'http://10.0.0.9:5000')
})

test('consistent-hash: a weight changed in place rebuilds the ring', () => {
  const servers = pool([1, 1])
  const keys = addresses(2000)
  const share = (): number => keys.filter((k) => pickOnRing(servers, always, k) === servers[0]).length / keys.length
  assert.ok(Math.abs(share() - 0.5) < 0.1)
  servers[0]!.weight = 9
  assert.ok(Math.abs(share() - 0.9) < 0.05, `share ${share()}`)
})

// ---------------------------------------------------------------- createBalancer

test('createBalancer: round-robin and least-conn follow their methods', () => {
  const servers = [server('http://a:1', 5), server('http://b:1', 1), server('http://c:1', 1)]
  const rr = createBalancer('round-robin')
  assert.equal(Array.from({ length: 7 }, () => pickUrl(rr, servers)!.slice(7, 8)).join(''), 'aabacaa')
  const [a, b] = pool([1, 1]) as [UpstreamServer, UpstreamServer]
  a.activeTunnels = 1
  assert.equal(createBalancer('least-conn').pick([a, b], always, ctx('1.1.1.1')), b)
})

test('createBalancer: ip-hash maps an address like createIpHash', () => {
  const servers = pool([1, 2, 3])
  const ours = createBalancer('ip-hash')
  const ref = createIpHash()
  for (const ip of addresses(200)) assert.equal(pickUrl(ours, servers, ctx(ip)), pickUrl(ref, servers, ctx(ip)))
})

test('createBalancer: random-two picks a usable server', () => {
  const servers = pool([1, 1, 1])
  const s = createBalancer('random-two').pick(servers, (x) => x === servers[2], ctx('1.1.1.1'))
  assert.equal(s, servers[2])
})

test('createBalancer: hash sends requests with the same key to the same server', () => {
  const servers = pool([1, 1, 1, 1])
  const hb = createBalancer({ hash: (req) => String(req.headers['x-user']) })
  for (const user of ['alice', 'bob', 'carol', 'dave']) {
    const expected = pickOnRing(servers, always, user)
    for (const ip of ['1.1.1.1', '2.2.2.2', '::1']) {
      assert.equal(hb.pick(servers, always, ctx(ip, { headers: { 'x-user': user } })), expected)
    }
  }
})

test('createBalancer: a hash key function that throws falls back to the client address', () => {
  const servers = pool([1, 1, 1])
  const hb = createBalancer({ hash: () => { throw new Error('boom') } })
  const ref = createIpHash()
  for (const ip of addresses(100)) assert.equal(hb.pick(servers, always, ctx(ip)), ref.pick(servers, always, ctx(ip)))
})

test('createBalancer: a hash key function returning a non-string falls back to the client address', () => {
  const servers = pool([1, 1, 1])
  const hb = createBalancer({ hash: () => 42 as unknown as string })
  const ref = createIpHash()
  for (const ip of addresses(100)) assert.equal(hb.pick(servers, always, ctx(ip)), ref.pick(servers, always, ctx(ip)))
})
