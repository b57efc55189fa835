/**
 * Properties of the pure parts, checked over generated inputs (fast-check):
 * what must hold for every request, not only for the examples the other
 * tests write out. A failure prints the smallest input that breaks it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import fc from 'fast-check'
import { SockgateError } from '../src/index.js'
import { normalizeHeaderOptions, rewriteRequestHeaders, type RewriteContext } from '../src/headers.js'
import { hostName, isValidHost } from '../src/host.js'
import { normalizeOptions, normalizeServer, type NormalizedRoute } from '../src/options.js'
import { compileRoutes } from '../src/route.js'
import { compileTrust, resolveClientAddress, unmapAddress } from '../src/trust.js'
import { validateUpgrade } from '../src/upgrade.js'
import { createCookieSticky } from '../src/balance/sticky.js'
import { UpstreamServer } from '../src/upstream/server.js'

const RUNS = { numRuns: 1_000 }

// ------------------------------------------------------------ the header rewriter

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']
const FORWARDING = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'forwarded', 'x-real-ip']
/** Names sockgate writes itself, so they may be in the output whatever the client's Connection listed. */
const OWN = new Set([...FORWARDING, 'host', 'content-length'])

const headerName = fc.oneof(
  fc.constantFrom(...HOP_BY_HOP, ...FORWARDING, 'host', 'content-length', 'cookie', 'x-app', 'expect'),
  fc.constantFrom(...HOP_BY_HOP, ...FORWARDING).map((n) => n.toUpperCase()),
  fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/)
)
/** Values with the characters that make trouble: CR, LF, NUL, commas, Latin-1 and beyond. */
const headerValue = fc.oneof(
  fc.string({ unit: fc.constantFrom('a', 'b', '1', ' ', ',', ';', '=', '\r', '\n', '\0', '\t', 'é', '€', 'x-app', 'upgrade', 'close', '10.0.0.1') }),
  fc.string()
)
const rawHeaders = fc.array(fc.tuple(headerName, headerValue), { maxLength: 12 }).map((pairs) => pairs.flat())

const peer = fc.oneof(fc.ipV4(), fc.ipV4().map((ip) => `::ffff:${ip}`), fc.constant('::1'))
const headerOptions = fc.record({
  xForwarded: fc.boolean(),
  forwarded: fc.boolean(),
  xRealIp: fc.boolean(),
  host: fc.constantFrom('preserve' as const, 'upstream' as const, 'fixed.example:8080'),
}).map((o) => normalizeHeaderOptions(o))
const trustOption = fc.constantFrom<false | true | string[]>(false, true, ['10.0.0.0/8'])

/** The context the gateway builds for a peer, with the client address resolved the way it does. */
function contextFor (raw: readonly string[], address: string, trustOpt: false | true | string[], upgrade: string | null): RewriteContext {
  const trust = compileTrust(trustOpt)
  const trusted = trust(address, 0)
  let xff: string | undefined
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === 'x-forwarded-for') xff = xff === undefined ? raw[i + 1] : `${xff}, ${raw[i + 1]!}`
  return {
    peerAddress: address,
    encrypted: false,
    localPort: 8080,
    trusted,
    clientAddress: trusted ? resolveClientAddress(address, xff, trust) : unmapAddress(address),
    upgrade,
    upstreamHost: '127.0.0.1:5001',
  }
}

/** The rewriter's output as [lower-case name, value] pairs, or null when it refused the request with a SockgateError. */
function rewrite (raw: readonly string[], ctx: RewriteContext, opts: ReturnType<typeof normalizeHeaderOptions>): Array<[string, string]> | null {
  let out: string[]
  try {
    out = rewriteRequestHeaders(raw, ctx, opts)
  } catch (err) {
    assert.ok(err instanceof SockgateError, `the rewriter threw something other than a SockgateError: ${String(err)}`)
    assert.equal(err.statusCode, 400)
    return null
  }
  const pairs: Array<[string, string]> = []
  for (let i = 0; i < out.length; i += 2) pairs.push([out[i]!.toLowerCase(), out[i + 1]!])
  return pairs
}

test('properties: the rewriter never lets CR, LF or NUL out, in a name or a value; it refuses with a 400 instead', () => {
  fc.assert(fc.property(rawHeaders, peer, trustOption, headerOptions, fc.constantFrom(null, 'websocket'), (raw, address, trust, opts, upgrade) => {
    const out = rewrite(raw, contextFor(raw, address, trust, upgrade), opts)
    if (out === null) return
    for (const [name, value] of out) {
      assert.doesNotMatch(name, /[\r\n\0]/)
      assert.doesNotMatch(value, /[\r\n\0]/)
    }
  }), RUNS)
})

test('properties: no hop-by-hop header, and nothing the client\'s Connection named, ever leaves the rewriter (upgrades: exactly Connection: upgrade and the Upgrade)', () => {
  fc.assert(fc.property(rawHeaders, peer, trustOption, headerOptions, fc.constantFrom(null, 'websocket'), (raw, address, trust, opts, upgrade) => {
    const out = rewrite(raw, contextFor(raw, address, trust, upgrade), opts)
    if (out === null) return
    const listed = new Set<string>()
    for (let i = 0; i < raw.length; i += 2) {
      if (raw[i]!.toLowerCase() === 'connection') for (const o of raw[i + 1]!.split(',')) listed.add(o.trim().toLowerCase())
    }
    const hop = out.filter(([name]) => HOP_BY_HOP.includes(name))
    assert.deepEqual(hop, upgrade === null ? [] : [['connection', 'upgrade'], ['upgrade', upgrade]])
    for (const [name] of out) {
      if (!OWN.has(name) && !HOP_BY_HOP.includes(name)) assert.ok(!listed.has(name), `${name} was listed in Connection and forwarded`)
    }
  }), RUNS)
})

test('properties: from an untrusted peer X-Forwarded-For is exactly the peer, and X-Real-IP / Forwarded name only the peer', () => {
  fc.assert(fc.property(rawHeaders, peer, headerOptions, (raw, address, opts) => {
    const ctx = contextFor(raw, address, false, null)
    const out = rewrite(raw, ctx, opts)
    if (out === null) return
    const own = unmapAddress(address)
    const values = (name: string): string[] => out.filter(([n]) => n === name).map(([, v]) => v)
    assert.deepEqual(values('x-forwarded-for'), opts.xForwarded ? [own] : [])
    assert.deepEqual(values('x-real-ip'), opts.xRealIp ? [own] : [])
    for (const forwarded of values('forwarded')) {
      const fors = [...forwarded.matchAll(/for=("?)([^;,"]+|\[[^\]]+\])\1/gi)].map((m) => m[2]!.replace(/^\[|\]$/g, ''))
      assert.deepEqual(fors, [own], `Forwarded names more than the peer: ${forwarded}`)
    }
  }), RUNS)
})

test('properties: from a trusted peer the client\'s X-Forwarded-For chain is kept and the peer appended', () => {
  const chain = fc.array(fc.ipV4(), { minLength: 1, maxLength: 4 })
  fc.assert(fc.property(chain, fc.ipV4(), (hops, address) => {
    const raw = ['Host', 'a.example', 'X-Forwarded-For', hops.join(', ')]
    const out = rewrite(raw, contextFor(raw, address, true, null), normalizeHeaderOptions(undefined))
    assert.ok(out !== null)
    assert.deepEqual(out.filter(([n]) => n === 'x-forwarded-for').map(([, v]) => v), [[...hops, address].join(', ')])
  }), RUNS)
})

// ------------------------------------------------------------ Host

const regName = fc.stringMatching(/^[A-Za-z0-9._~-]{1,30}$/)
const port = fc.option(fc.integer({ min: 0, max: 65_535 }).map(String), { nil: undefined })

test('properties: every name or IP literal with an optional port is a valid Host, and hostName is its lower-cased name', () => {
  const name = fc.oneof(regName, fc.ipV4(), fc.ipV6().map((ip) => `[${ip}]`))
  fc.assert(fc.property(name, port, (n, p) => {
    const host = p === undefined ? n : `${n}:${p}`
    assert.equal(isValidHost(host), true, host)
    assert.equal(hostName(host), n.toLowerCase())
  }), RUNS)
})

test('properties: a Host with a delimiter, a space, a control character, or a bad port is refused', () => {
  const bad = fc.constantFrom('@', ',', '/', '\\', ' ', '?', '#', '\t', '\0', '\u007f', '%', '"', '<')
  fc.assert(fc.property(regName, bad, regName, (a, c, b) => {
    assert.equal(isValidHost(`${a}${c}${b}`), false, JSON.stringify(`${a}${c}${b}`))
  }), RUNS)
  const badPort = fc.oneof(fc.integer({ min: 65_536, max: 10_000_000 }).map(String), fc.stringMatching(/^[0-9]*[a-z:][0-9a-z]*$/))
  fc.assert(fc.property(regName, badPort, (n, p) => {
    assert.equal(isValidHost(`${n}:${p}`), false, `${n}:${p}`)
  }), RUNS)
})

// ------------------------------------------------------------ the upgrade validator

const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='

test('properties: validateUpgrade passes exactly a GET, HTTP/1.1, Connection listing upgrade, one allowed token and (websocket) a good key and version 13', () => {
  const request = fc.record({
    method: fc.constantFrom('GET', 'POST', 'get', 'HEAD'),
    httpVersion: fc.constantFrom('1.1', '1.0', '2.0'),
    connection: fc.constantFrom('Upgrade', 'keep-alive, Upgrade', 'upgrade,close', 'keep-alive', 'upgraded', undefined),
    upgrade: fc.constantFrom('websocket', 'WebSocket', ' websocket ', 'h2c', 'websocket, h2c', 'chat', '', undefined),
    key: fc.constantFrom(KEY, 'short==', 'dGhlIHNhbXBsZSBub25jZQ', `${KEY}x`, undefined),
    version: fc.constantFrom('13', '8', '13, 8', undefined),
  })
  const allowed = new Set(['websocket', 'chat'])
  fc.assert(fc.property(request, (r) => {
    const headers: Record<string, string> = {}
    if (r.connection !== undefined) headers.connection = r.connection
    if (r.upgrade !== undefined) headers.upgrade = r.upgrade
    if (r.key !== undefined) headers['sec-websocket-key'] = r.key
    if (r.version !== undefined) headers['sec-websocket-version'] = r.version
    const got = validateUpgrade({ method: r.method, httpVersion: r.httpVersion, headers } as unknown as IncomingMessage, allowed)
    // The rules, restated from RFC 6455 §4.2.1 and the `upgrades` option.
    const tokens = (r.upgrade ?? '').split(',').map((t) => t.trim().toLowerCase()).filter((t) => t !== '')
    const listsUpgrade = (r.connection ?? '').split(',').some((t) => t.trim().toLowerCase() === 'upgrade')
    const shapeOk = r.method === 'GET' && r.httpVersion === '1.1' && listsUpgrade && tokens.length === 1 && allowed.has(tokens[0]!)
    const wsOk = tokens[0] !== 'websocket' || r.key === KEY
    if (shapeOk && wsOk && (tokens[0] !== 'websocket' || r.version === '13')) {
      assert.equal(got, tokens[0])
    } else {
      assert.ok(got instanceof SockgateError, `accepted: ${JSON.stringify(r)}`)
      // 426 only for a websocket upgrade that is right in every way but its version.
      assert.equal(got.statusCode, shapeOk && wsOk ? 426 : 400, JSON.stringify(r))
    }
  }), { numRuns: 2_000 })
})

// ------------------------------------------------------------ route matching

const HOSTS = [undefined, 'a.example', 'b.a.example', '*.example', '*.a.example'] as const
const PATHS = ['/', '/a', '/a/', '/a/b', '/ab', '/b'] as const
const REQUEST_HOSTS = ['a.example', 'b.a.example', 'c.b.a.example', 'example', 'x.example', 'A.Example:8080'] as const
const REQUEST_PATHS = ['/', '/a', '/a/', '/a/b', '/a/bc', '/ab', '/abc', '/a?x=1', '/b/c', '/c'] as const

/** nginx's choice, restated: host rank (exact, longest wildcard, any), then the longest path prefix on segment boundaries, then order. */
function referenceMatch (routes: readonly NormalizedRoute[], host: string, path: string): NormalizedRoute | undefined {
  const name = host.toLowerCase().replace(/:\d+$/, '')
  const prefixTakes = (prefix: string): boolean => path === prefix || (prefix.endsWith('/') ? path.startsWith(prefix) : path.startsWith(`${prefix}/`) || path.startsWith(`${prefix}?`))
  const rank = (r: NormalizedRoute): [number, number] => {
    switch (r.host.kind) {
      case 'exact': return [0, 0]
      case 'suffix': return [1, -r.host.suffix.length]
      default: return [3, 0]
    }
  }
  const hostTakes = (r: NormalizedRoute): boolean => r.host.kind === 'any' || (r.host.kind === 'exact' && r.host.host === name) ||
    (r.host.kind === 'suffix' && name.endsWith(r.host.suffix) && name.length > r.host.suffix.length)
  const candidates = routes.map((r, i) => ({ r, i })).filter(({ r }) => hostTakes(r) && prefixTakes(r.path))
  candidates.sort((x, y) => rank(x.r)[0] - rank(y.r)[0] || rank(x.r)[1] - rank(y.r)[1] || y.r.path.length - x.r.path.length || x.i - y.i)
  return candidates[0]?.r
}

test('properties: routing picks the best host, then the longest path prefix on segment boundaries, like nginx', () => {
  const route = fc.record({ host: fc.constantFrom(...HOSTS), path: fc.constantFrom(...PATHS) })
  fc.assert(fc.property(fc.array(route, { minLength: 1, maxLength: 6 }), fc.constantFrom(...REQUEST_HOSTS), fc.constantFrom(...REQUEST_PATHS), (specs, host, path) => {
    const routes = normalizeOptions({
      upstreams: { p: { servers: ['http://127.0.0.1:5001'] } },
      routes: specs.map((s) => ({ ...(s.host === undefined ? {} : { host: s.host }), path: s.path, upstream: 'p' })),
    }).routes
    assert.equal(compileRoutes(routes).match(host, path), referenceMatch(routes, host, path), `${host} ${path} in ${JSON.stringify(specs)}`)
  }), RUNS)
})

// ------------------------------------------------------------ the sticky cookie

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

test('properties: a sticky cookie maps back to its server, and no changed value or other secret is accepted', () => {
  const servers = ['http://127.0.0.1:5001', 'http://127.0.0.1:5002', 'http://127.0.0.1:5003']
    .map((url, i) => new UpstreamServer(normalizeServer(url, `servers[${i}]`)))
  const secret = fc.string({ minLength: 1, maxLength: 40 })
  fc.assert(fc.property(secret, secret, fc.integer({ min: 0, max: 2 }), fc.nat(), fc.nat(), (mine, theirs, which, at, by) => {
    const sticky = createCookieSticky({ name: 'sg', secret: mine })
    const server = servers[which]!
    const value = sticky.valueFor(server)
    assert.equal(sticky.serverFor(`sg=${value}`, servers), server)
    // One character changed to another: the value names no server.
    const i = at % value.length
    const swapped = BASE64URL[(BASE64URL.indexOf(value[i]!) + 1 + (by % (BASE64URL.length - 1))) % BASE64URL.length]!
    assert.equal(sticky.serverFor(`sg=${value.slice(0, i)}${swapped}${value.slice(i + 1)}`, servers), undefined)
    assert.equal(sticky.serverFor(`sg=${value.slice(0, -1)}`, servers), undefined)
    // A value made with another secret is not accepted (unless the secrets are the same).
    const forged = createCookieSticky({ name: 'sg', secret: theirs }).valueFor(server)
    if (theirs !== mine) assert.equal(sticky.serverFor(`sg=${forged}`, servers), undefined)
  }), RUNS)
})
