/**
 * Properties of the pure parts, checked over generated inputs (fast-check):
 * what must hold for every request, not only for the examples the other
 * tests write out. Each reference below is restated from the rule (RFC or
 * docs), not from the code. A failure prints the smallest input that breaks it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import fc from 'fast-check'
import { BadRequestError, SockgateError } from '../src/index.js'
import { normalizeHeaderOptions, rewriteRequestHeaders, type NormalizedHeaderOptions, type RewriteContext } from '../src/headers.js'
import { hostName, isValidHost } from '../src/host.js'
import { normalizeOptions, normalizeServer } from '../src/options.js'
import { compileRoutes, pathMatches } from '../src/route.js'
import { compileTrust, resolveClientAddress, unmapAddress } from '../src/trust.js'
import { validateUpgrade } from '../src/proxy-upgrade.js'
import { createCookieSticky } from '../src/balance/sticky.js'
import { UpstreamServer } from '../src/upstream/server.js'

const RUNS = { numRuns: 1_000 }

// ------------------------------------------------------------ the header rewriter

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']
const FORWARDING = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'forwarded', 'x-real-ip']
const ORDINARY = ['host', 'content-length', 'cookie', 'x-app', 'expect', 'accept', 'close']
/**
 * Names that may be in the output although the client's Connection listed them:
 * the ones sockgate writes itself, Host and Content-Length (a peer may not make
 * them hop-by-hop, docs/headers.md), and Close: the rewriter reads `close` in
 * Connection as the close option (RFC 9110 §9.6), so a field named Close (a
 * reserved name, §18.4) still goes through. docs/headers.md does not say so.
 */
const MAY_BE_LISTED = new Set([...FORWARDING, 'host', 'content-length', 'close'])
const TROUBLE = ['\r', '\n', '\0', '\r\n', '\t', ' ', ',', ';', '=', 'é', '€', '\u{1f600}', 'a', 'B', '1', '-']

/** Names: known ones in any case, random tokens, and (unless `clean`) strings with CR, LF, NUL and non-ASCII in them. */
function headerName (clean: boolean): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...HOP_BY_HOP, ...FORWARDING, ...ORDINARY) },
    { weight: 2, arbitrary: fc.constantFrom(...HOP_BY_HOP, ...FORWARDING, ...ORDINARY).map((n) => n.toUpperCase()) },
    { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,12}$/) },
    { weight: clean ? 0 : 1, arbitrary: fc.string({ unit: fc.constantFrom(...TROUBLE), minLength: 1, maxLength: 6 }) }
  )
}
/** An X-Forwarded-For as clients and proxies write it, empty entries and ports included. */
const addressList = fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('', ' ', 'unknown', '[::1]:80', '192.0.2.1:1234')), { maxLength: 3 }).map((a) => a.join(','))
/** Values with the characters that make trouble, addresses, header names (for Connection) and anything at all. */
const headerValue = fc.oneof(
  fc.string({ unit: fc.constantFrom(...TROUBLE, 'x-app', 'upgrade', 'close', 'keep-alive', '10.0.0.1', '::1') }),
  addressList,
  fc.string({ unit: 'binary' })
)
/** A Connection header that names other fields of the request, so the listing really removes something. */
const connectionListing = fc.array(fc.constantFrom(...HOP_BY_HOP, ...FORWARDING, ...ORDINARY, 'X-App', ' te '), { minLength: 1, maxLength: 4 })
  .map((names) => ['Connection', names.join(',')] as [string, string])
const forwardingField = fc.tuple(fc.constantFrom('X-Forwarded-For', 'x-forwarded-for', 'Forwarded', 'X-Real-IP'), addressList)

/**
 * A request's raw header list. `clean` ones have no CR, LF or NUL and at most
 * one Host, so the rewriter takes them and the other properties see output.
 */
function rawHeaders (clean: boolean): fc.Arbitrary<string[]> {
  const value = clean ? headerValue.map((v) => v.replace(/[\r\n\0]/g, '')) : headerValue
  return fc.array(fc.oneof(
    { weight: 5, arbitrary: fc.tuple(headerName(clean), value) },
    { weight: 1, arbitrary: connectionListing },
    { weight: 2, arbitrary: forwardingField }
  ), { maxLength: 14 }).map((pairs) => {
    if (clean) pairs = pairs.filter(([name], i) => name.toLowerCase() !== 'host' || pairs.findIndex(([n]) => n.toLowerCase() === 'host') === i)
    return pairs.flat()
  })
}

const peer = fc.oneof(fc.ipV4(), fc.ipV4().map((ip) => `::ffff:${ip}`), fc.ipV6(), fc.constantFrom('10.1.2.3', '::ffff:10.1.2.3', '::1', '127.0.0.1'))
const trustOption = fc.constantFrom<false | true | string[]>(false, true, ['10.0.0.0/8'], ['loopback'])
/** Upgrade tokens as validateUpgrade passes them on (lower-case tokens). */
const upgradeToken = fc.option(fc.oneof(fc.constantFrom('websocket', 'h2c'), fc.stringMatching(/^[a-z][a-z0-9.-]{0,8}$/)), { nil: null })

/** Names `headers.set` / `headers.remove` may take, including forwarding fields an operator fixes or hides. */
const OPERATOR_NAMES = ['x-forwarded-for', 'x-real-ip', 'forwarded', 'x-forwarded-proto', 'x-app', 'cookie', 'accept']
const headerOptions: fc.Arbitrary<NormalizedHeaderOptions> = fc.record({
  xForwarded: fc.boolean(),
  forwarded: fc.boolean(),
  xRealIp: fc.boolean(),
  host: fc.constantFrom('preserve' as const, 'upstream' as const, 'fixed.example:8080'),
  // Each name is set (to a value) or removed (null), never both: normalizeHeaderOptions refuses that.
  edits: fc.uniqueArray(fc.tuple(fc.constantFrom(...OPERATOR_NAMES), fc.option(fc.constantFrom('', 'v', '203.0.113.9', 'a b'), { nil: null })), { selector: ([n]) => n, maxLength: 3 }),
}).map(({ edits, ...o }) => {
  const set: Record<string, string> = {}
  const remove: string[] = []
  for (const [name, value] of edits) {
    if (value === null) remove.push(name)
    else set[name] = value
  }
  return normalizeHeaderOptions({ ...o, ...(edits.length > 0 ? { set, remove } : {}) })
})

/** The context the gateway builds for a peer (Gateway.headerContext), with the client address resolved the way it does. */
function contextFor (raw: readonly string[], address: string, trustOpt: false | true | string[], upgrade: string | null): RewriteContext {
  const trust = compileTrust(trustOpt)
  const trusted = trust(address, 0)
  const xff = valuesIn(raw, 'x-forwarded-for')
  return {
    peerAddress: address,
    encrypted: false,
    localPort: 8080,
    trusted,
    clientAddress: trusted ? resolveClientAddress(address, xff.length === 0 ? undefined : xff.join(', '), trust) : unmapAddress(address),
    upgrade,
    upstreamHost: '127.0.0.1:5001',
  }
}

function valuesIn (raw: readonly string[], lowerName: string): string[] {
  const values: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.toLowerCase() === lowerName) values.push(raw[i + 1]!)
  return values
}

/** Lower-case names the request's Connection headers list (RFC 9110 §7.6.1). */
function listedInConnection (raw: readonly string[]): Set<string> {
  return new Set(valuesIn(raw, 'connection').flatMap((v) => v.split(',')).map((o) => o.trim().toLowerCase()))
}

/** `::ffff:a.b.c.d` written as `a.b.c.d`: the one spelling docs/headers.md promises for IPv4 clients. */
function ownAddress (address: string): string {
  return address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '')
}

/** The rewriter's output as [lower-case name, value] pairs, or null when it refused the request with a 400. */
function rewrite (raw: readonly string[], ctx: RewriteContext, opts: NormalizedHeaderOptions): Array<[string, string]> | null {
  let out: string[]
  try {
    out = rewriteRequestHeaders(raw, ctx, opts)
  } catch (err) {
    assert.ok(err instanceof BadRequestError, `the rewriter threw something other than a BadRequestError: ${String(err)}`)
    assert.equal(err.statusCode, 400)
    return null
  }
  assert.equal(out.length % 2, 0)
  const pairs: Array<[string, string]> = []
  for (let i = 0; i < out.length; i += 2) pairs.push([out[i]!.toLowerCase(), out[i + 1]!])
  return pairs
}

const CR_LF_NUL = /[\r\n\0]/

test('properties: the rewriter never lets CR, LF or NUL out, in a name or a value; it refuses with a 400 instead, and only then', () => {
  // Here the addresses and the token may be anything too: the rewriter must not trust its context either.
  const anyAddress = fc.oneof(peer, fc.string({ unit: fc.constantFrom(...TROUBLE) }))
  const anyToken = fc.option(fc.oneof(upgradeToken.filter((t) => t !== null), fc.string({ unit: fc.constantFrom(...TROUBLE) })), { nil: null })
  fc.assert(fc.property(rawHeaders(false), anyAddress, anyAddress, fc.boolean(), headerOptions, anyToken, (raw, address, client, trusted, opts, upgrade) => {
    const ctx: RewriteContext = { peerAddress: address, encrypted: false, localPort: 8080, trusted, clientAddress: client, upgrade, upstreamHost: '127.0.0.1:5001' }
    const out = rewrite(raw, ctx, opts)
    // A CR, LF or NUL anywhere in the request, even in a field that would be dropped, or two Hosts: a 400 (RFC 9110 §5.5, RFC 9112 §3.2).
    const mustRefuse = raw.some((s) => CR_LF_NUL.test(s)) || valuesIn(raw, 'host').length > 1
    const mayRefuse = mustRefuse || [address, client, upgrade ?? ''].some((s) => CR_LF_NUL.test(s))
    if (out === null) {
      assert.ok(mayRefuse, 'refused a request with no CR, LF or NUL and at most one Host')
      return
    }
    assert.ok(!mustRefuse, 'passed a request with CR, LF or NUL, or two Hosts')
    for (const [name, value] of out) {
      assert.doesNotMatch(name, CR_LF_NUL)
      assert.doesNotMatch(value, CR_LF_NUL)
    }
  }), RUNS)
})

test('properties: no hop-by-hop header, and nothing the client\'s Connection named, ever leaves the rewriter (upgrades: exactly Connection: upgrade and the Upgrade)', () => {
  fc.assert(fc.property(rawHeaders(true), peer, trustOption, headerOptions, upgradeToken, (raw, address, trust, opts, upgrade) => {
    const out = rewrite(raw, contextFor(raw, address, trust, upgrade), opts)
    assert.ok(out !== null, 'refused a clean request')
    const hop = out.filter(([name]) => HOP_BY_HOP.includes(name))
    assert.deepEqual(hop, upgrade === null ? [] : [['connection', 'upgrade'], ['upgrade', upgrade]])
    const listed = listedInConnection(raw)
    const operators = new Set(opts.set.map(([name]) => name))
    for (const [name] of out) {
      if (HOP_BY_HOP.includes(name) || MAY_BE_LISTED.has(name) || operators.has(name)) continue
      assert.ok(!listed.has(name), `${name} was listed in Connection and forwarded`)
    }
  }), RUNS)
})

/**
 * The X-Forwarded-For an upstream must see, restated from docs/headers.md:
 * an operator's `set` or `remove` wins; from an untrusted peer only the peer
 * itself; from a trusted one the client's chain (its non-empty entries, in
 * order, unless its Connection dropped the field) and then the peer. With
 * `xForwarded: false` a trusted peer's field goes through untouched.
 */
function expectedXff (raw: readonly string[], ctx: RewriteContext, opts: NormalizedHeaderOptions): string[] {
  const set = opts.set.find(([name]) => name === 'x-forwarded-for')
  if (set !== undefined) return [set[1]]
  if (opts.remove.has('x-forwarded-for')) return []
  const own = ownAddress(ctx.peerAddress)
  const theirs = ctx.trusted && !listedInConnection(raw).has('x-forwarded-for') ? valuesIn(raw, 'x-forwarded-for') : []
  if (!opts.xForwarded) return theirs
  const chain = [...theirs.map((v) => v.trim()).filter((v) => v !== ''), own].join(', ')
  return [chain]
}

test('properties: from an untrusted peer X-Forwarded-For is exactly the peer; from a trusted one the client\'s chain is kept and the peer appended', () => {
  let untrusted = 0
  let trustedWithChain = 0
  fc.assert(fc.property(rawHeaders(true), peer, trustOption, headerOptions, (raw, address, trust, opts) => {
    const ctx = contextFor(raw, address, trust, null)
    const out = rewrite(raw, ctx, opts)
    assert.ok(out !== null, 'refused a clean request')
    if (!ctx.trusted) untrusted++
    else if (valuesIn(raw, 'x-forwarded-for').length > 0) trustedWithChain++
    const xff = out.filter(([n]) => n === 'x-forwarded-for').map(([, v]) => v)
    assert.deepEqual(xff, expectedXff(raw, ctx, opts))
    if (!ctx.trusted && opts.set.length === 0 && opts.remove.size === 0) assert.deepEqual(xff, opts.xForwarded ? [ownAddress(address)] : [])
  }), RUNS)
  // Both sides of the rule were really exercised.
  assert.ok(untrusted > 50 && trustedWithChain > 50, `untrusted ${untrusted}, trusted with a chain ${trustedWithChain}`)
})

test('properties: from an untrusted peer X-Real-IP and Forwarded name only the peer, whatever the client sent', () => {
  fc.assert(fc.property(rawHeaders(true), peer, headerOptions, (raw, address, opts) => {
    const ctx = contextFor(raw, address, false, null)
    const out = rewrite(raw, ctx, opts)
    assert.ok(out !== null, 'refused a clean request')
    const own = ownAddress(address)
    const values = (name: string): string[] => out.filter(([n]) => n === name).map(([, v]) => v)
    const operator = (name: string, on: boolean, ours: string[]): string[] => {
      const set = opts.set.find(([n]) => n === name)
      return set !== undefined ? [set[1]] : opts.remove.has(name) || !on ? [] : ours
    }
    assert.deepEqual(values('x-real-ip'), operator('x-real-ip', opts.xRealIp, [own]))
    const forwarded = values('forwarded')
    if (opts.set.some(([n]) => n === 'forwarded')) return
    assert.equal(forwarded.length, opts.forwarded && !opts.remove.has('forwarded') ? 1 : 0)
    for (const value of forwarded) {
      const fors = [...value.matchAll(/for=("?)([^;,"]+|\[[^\]]+\])\1/gi)].map((m) => m[2]!.replace(/^\[|\]$/g, ''))
      assert.deepEqual(fors, [own], `Forwarded names more than the peer: ${value}`)
    }
  }), RUNS)
})

// ------------------------------------------------------------ Host

const regName = fc.stringMatching(/^[A-Za-z0-9._~-]{1,30}$/)
const randomCase = (s: string): fc.Arbitrary<string> => fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length })
  .map((up) => [...s].map((c, i) => up[i] === true ? c.toUpperCase() : c).join(''))
/** reg-name / IPv4address / "[" IPv6address "]" (RFC 3986 §3.2.2), in any case. */
const hostNamePart = fc.oneof(regName, fc.ipV4(), fc.ipV6().chain((ip) => randomCase(`[${ip}]`)))
const port = fc.option(fc.integer({ min: 0, max: 65_535 }).map(String), { nil: undefined })
const validHost = fc.tuple(hostNamePart, port).map(([n, p]) => ({ name: n, host: p === undefined ? n : `${n}:${p}` }))

test('properties: every name or IP literal with an optional port is a valid Host, and hostName is its lower-cased name', () => {
  fc.assert(fc.property(validHost, ({ name, host }) => {
    assert.equal(isValidHost(host), true, host)
    assert.equal(hostName(host), name.toLowerCase())
  }), RUNS)
})

test('properties: a Host with a delimiter, a space, a control character or non-ASCII anywhere, or a bad port, is refused', () => {
  const control = fc.oneof(fc.integer({ min: 0, max: 0x1f }), fc.constant(0x7f)).map((c) => String.fromCharCode(c))
  const bad = fc.oneof(fc.constantFrom('@', ',', '/', '\\', ' ', '?', '#', '%', '"', '<', 'é', '\u{1f600}'), control)
  fc.assert(fc.property(validHost, bad, fc.nat(), ({ host }, c, at) => {
    const i = at % (host.length + 1)
    const spoiled = `${host.slice(0, i)}${c}${host.slice(i)}`
    assert.equal(isValidHost(spoiled), false, JSON.stringify(spoiled))
  }), RUNS)
  const badPort = fc.oneof(
    fc.integer({ min: 65_536, max: 10_000_000 }).map(String),
    fc.stringMatching(/^[0-9]*[^0-9][0-9a-z]*$/),
    fc.integer({ min: 0, max: 65_535 }).map((p) => `+${p}`)
  )
  fc.assert(fc.property(hostNamePart, badPort, (n, p) => {
    assert.equal(isValidHost(`${n}:${p}`), false, `${n}:${p}`)
  }), RUNS)
})

// ------------------------------------------------------------ the upgrade validator

/** A Sec-WebSocket-Key and whether RFC 6455 §4.1 allows it: base64 of exactly 16 bytes. */
const wsKey = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => ({ key: Buffer.from(b).toString('base64'), ok: true })) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 40 }).filter((b) => b.length !== 16).map((b) => ({ key: Buffer.from(b).toString('base64'), ok: false })) },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.constantFrom('unpadded', 'base64url', 'spaced', 'extra')).map(([b, how]) => {
      const key = Buffer.from(b).toString('base64')
      const spoiled = { unpadded: key.slice(0, -2), base64url: Buffer.from(b).toString('base64url'), spaced: ` ${key}`, extra: `${key}A` }[how]
      return { key: spoiled, ok: false }
    }),
  },
  { weight: 1, arbitrary: fc.string().map((key) => ({ key, ok: false })) }
)
/** `usual` most of the time, so that the requests that pass are generated too. */
const often = (usual: string, other: fc.Arbitrary<string>): fc.Arbitrary<string> => fc.oneof({ weight: 3, arbitrary: fc.constant(usual) }, { weight: 1, arbitrary: other })
const list = (items: readonly string[]): fc.Arbitrary<string> => fc.array(fc.constantFrom(...items), { maxLength: 3 }).map((a) => a.join(','))

test('properties: validateUpgrade passes exactly a GET, HTTP/1.1, Connection listing upgrade, one allowed token and (websocket) a good key and version 13', () => {
  const request = fc.record({
    method: often('GET', fc.oneof(fc.constantFrom('POST', 'get', 'HEAD', 'CONNECT'), fc.stringMatching(/^[A-Z]{1,7}$/))),
    httpVersion: often('1.1', fc.constantFrom('1.0', '2.0', '0.9', '1.10')),
    connection: fc.option(often('Upgrade', list(['Upgrade', 'upgrade', ' UPGRADE ', 'keep-alive', 'close', 'upgraded', ''])), { nil: undefined }),
    upgrade: fc.option(often('websocket', fc.oneof(list(['websocket', 'WebSocket', ' websocket ', 'h2c', 'chat', '', 'websocket/13']), fc.string())), { nil: undefined }),
    key: fc.option(wsKey, { nil: undefined }),
    version: fc.option(often('13', fc.oneof(fc.constantFrom('8', '13, 8', '013', ' 13'), fc.string())), { nil: undefined }),
  })
  const allowed = new Set(['websocket', 'chat'])
  const answered = { token: 0, 400: 0, 426: 0 }
  fc.assert(fc.property(request, (r) => {
    const headers: Record<string, string> = {}
    if (r.connection !== undefined) headers.connection = r.connection
    if (r.upgrade !== undefined) headers.upgrade = r.upgrade
    if (r.key !== undefined) headers['sec-websocket-key'] = r.key.key
    if (r.version !== undefined) headers['sec-websocket-version'] = r.version
    const got = validateUpgrade({ method: r.method, httpVersion: r.httpVersion, headers } as unknown as IncomingMessage, allowed)
    // The rules, restated from RFC 9110 §7.8, RFC 6455 §4.2.1 and the `upgrades` option.
    const tokens = (r.upgrade ?? '').split(',').map((t) => t.trim().toLowerCase()).filter((t) => t !== '')
    const listsUpgrade = (r.connection ?? '').split(',').some((t) => t.trim().toLowerCase() === 'upgrade')
    const shapeOk = r.method === 'GET' && r.httpVersion === '1.1' && listsUpgrade && tokens.length === 1 && allowed.has(tokens[0]!)
    const websocket = tokens[0] === 'websocket'
    const keyOk = !websocket || r.key?.ok === true
    if (shapeOk && keyOk && (!websocket || r.version === '13')) {
      assert.equal(got, tokens[0])
      answered.token++
    } else {
      assert.ok(got instanceof SockgateError, `accepted: ${JSON.stringify(r)}`)
      // 426 (with the version to use) only for a websocket upgrade that is right in every way but its version.
      assert.equal(got.statusCode, shapeOk && keyOk ? 426 : 400, JSON.stringify(r))
      answered[got.statusCode as 400 | 426]++
    }
  }), { numRuns: 3_000 })
  assert.ok(answered.token > 20 && answered[426] > 20 && answered[400] > 20, JSON.stringify(answered))
})

// ------------------------------------------------------------ route matching

/** Route hosts: none (any), exact names, wildcards of two lengths, and RegExps (one with g, whose lastIndex must not leak). */
const ROUTE_HOSTS: ReadonlyArray<string | RegExp | undefined> = [undefined, 'a.example', 'b.a.example', '*.example', '*.a.example', /^b\./, /example$/g, /^\[/]
const segments = fc.array(fc.constantFrom('a', 'b', 'ab', 'rt'), { maxLength: 3 }).map((s) => `/${s.join('/')}`)
const routePath = fc.oneof(segments, segments.map((p) => p === '/' ? p : `${p}/`))
const requestHost = fc.constantFrom(undefined, 'a.example', 'b.a.example', 'c.b.a.example', 'example', 'x.example', 'A.Example:8080', 'B.A.EXAMPLE', '[::1]:80', 'b.other')
const requestPath = fc.tuple(segments, fc.constantFrom('', '/', '?x=1', '?', 'c', 'x/y', '/c', '.js')).map(([p, tail]) => p === '/' && tail.startsWith('?') ? `/${tail}` : `${p}${tail}`)

/** A path prefix takes a path on segment boundaries only (docs/options.md): `/rt` takes `/rt`, `/rt/x`, `/rt?x`, never `/rtx`. */
function prefixTakes (prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false
  const rest = path.slice(prefix.length)
  return rest === '' || prefix.endsWith('/') || rest.startsWith('/') || rest.startsWith('?')
}

/**
 * nginx's choice, restated, as an index into `specs`: host rank (exact, longest
 * wildcard, RegExp, any), then the longest path prefix, then the order given.
 */
function referenceMatch (specs: ReadonlyArray<{ host: string | RegExp | undefined, path: string }>, host: string | undefined, path: string): number {
  const name = (host ?? '').toLowerCase().replace(/:\d*$/, '')
  const rank = (h: string | RegExp | undefined): [number, number] => {
    if (h === undefined) return [3, 0]
    if (h instanceof RegExp) return [2, 0]
    return h.startsWith('*.') ? [1, -h.length] : [0, 0]
  }
  const hostTakes = (h: string | RegExp | undefined): boolean => {
    if (h === undefined) return true
    if (h instanceof RegExp) return new RegExp(h.source, h.flags.replace(/[gy]/g, '')).test(name)
    return h.startsWith('*.') ? name.endsWith(h.slice(1)) && name.length > h.length - 1 : name === h
  }
  const candidates = specs.map((s, i) => ({ s, i })).filter(({ s }) => hostTakes(s.host) && prefixTakes(s.path, path))
  candidates.sort((x, y) => rank(x.s.host)[0] - rank(y.s.host)[0] || rank(x.s.host)[1] - rank(y.s.host)[1] || y.s.path.length - x.s.path.length || x.i - y.i)
  return candidates[0]?.i ?? -1
}

test('properties: pathMatches takes a path on segment boundaries only', () => {
  const tail = fc.string({ unit: fc.constantFrom('a', 'b', '/', '?', '.', '-', '#'), maxLength: 5 })
  const path = (prefix: string): fc.Arbitrary<string> => fc.oneof(tail.map((t) => `${prefix}${t}`), tail.map((t) => `/${t}`))
  fc.assert(fc.property(routePath.chain((p) => fc.tuple(fc.constant(p), path(p))), ([prefix, p]) => {
    assert.equal(pathMatches(prefix, p), prefixTakes(prefix, p), `${prefix} ${p}`)
  }), RUNS)
})

test('properties: routing picks the best host, then the longest path prefix on segment boundaries, like nginx', () => {
  const route = fc.record({ host: fc.constantFrom(...ROUTE_HOSTS), path: routePath })
  fc.assert(fc.property(fc.array(route, { minLength: 1, maxLength: 6 }), fc.array(fc.tuple(requestHost, requestPath), { minLength: 1, maxLength: 4 }), (specs, requests) => {
    const routes = normalizeOptions({
      upstreams: { p: { servers: ['http://127.0.0.1:5001'] } },
      routes: specs.map((s) => ({ ...(s.host === undefined ? {} : { host: s.host }), path: s.path, upstream: 'p' })),
    }).routes
    const table = compileRoutes(routes)
    // Several requests on one table: a RegExp's state must not carry from one to the next.
    for (const [host, path] of requests) {
      const got = table.match(host, path)
      assert.equal(got === undefined ? -1 : routes.indexOf(got), referenceMatch(specs, host, path), `${String(host)} ${path} in ${specs.map((s) => `${String(s.host)} ${s.path}`).join(' | ')}`)
      assert.equal(table.claims(path), specs.some((s) => prefixTakes(s.path, path)))
    }
  }), RUNS)
})

// ------------------------------------------------------------ the sticky cookie

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
const SERVERS = ['http://127.0.0.1:5001', 'http://127.0.0.1:5002', 'http://127.0.0.1:5003', 'http://127.0.0.1:5004']
  .map((url, i) => new UpstreamServer(normalizeServer(url, `servers[${i}]`)))
const secret = fc.string({ minLength: 1, maxLength: 40 })

test('properties: a sticky cookie maps back to its server; a changed value, a cut one, or one made with another secret is refused', () => {
  fc.assert(fc.property(secret, secret, fc.integer({ min: 0, max: SERVERS.length - 1 }), fc.nat(), fc.integer({ min: 1, max: BASE64URL.length - 1 }), fc.integer({ min: 1, max: 21 }), (mine, theirs, which, at, by, cut) => {
    const sticky = createCookieSticky({ name: 'sg', secret: mine })
    const server = SERVERS[which]!
    const value = sticky.valueFor(server)
    assert.equal(sticky.serverFor(`sg=${value}`, SERVERS), server)
    assert.equal(sticky.serverFor(`a=1; sg="${value}"; b=2`, SERVERS), server)
    // One character changed to another: the value names no server, not even another one.
    const i = at % value.length
    const swapped = BASE64URL[(BASE64URL.indexOf(value[i]!) + by) % BASE64URL.length]!
    assert.equal(sticky.serverFor(`sg=${value.slice(0, i)}${swapped}${value.slice(i + 1)}`, SERVERS), undefined)
    // Cut short, or cut and padded back to length.
    assert.equal(sticky.serverFor(`sg=${value.slice(0, cut)}`, SERVERS), undefined)
    assert.equal(sticky.serverFor(`sg=${value.slice(0, cut)}${'A'.repeat(value.length - cut)}`, SERVERS), value.endsWith('A'.repeat(value.length - cut)) ? server : undefined)
    // A value made with another secret, for this server or any other, is not accepted (unless the secrets are the same).
    const other = createCookieSticky({ name: 'sg', secret: theirs })
    if (theirs !== mine) for (const s of SERVERS) assert.equal(sticky.serverFor(`sg=${other.valueFor(s)}`, SERVERS), undefined)
  }), RUNS)
})

test('properties: no Cookie header names a server but by a value the secret made for it, and never a server that left the pool', () => {
  const forged = fc.string({ unit: fc.constantFrom(...BASE64URL), minLength: 20, maxLength: 24 })
  const cookie = fc.tuple(fc.constantFrom('sg', 'sgx', 'x', 'SG'), fc.oneof(forged, fc.integer({ min: 0, max: SERVERS.length - 1 }).map(String)), fc.boolean())
  fc.assert(fc.property(secret, fc.array(cookie, { maxLength: 5 }), fc.subarray(SERVERS), (mine, cookies, pool) => {
    const sticky = createCookieSticky({ name: 'sg', secret: mine })
    // A digit stands for a real value, of SERVERS[digit]: a client may hold a cookie of a server no longer in `pool`.
    const parts = cookies.map(([name, v, quoted]) => {
      const value = /^\d$/.test(v) ? sticky.valueFor(SERVERS[Number(v)]!) : v
      return `${name}=${quoted ? `"${value}"` : value}`
    })
    const got = sticky.serverFor(parts.length === 0 ? undefined : parts.join('; '), pool)
    // Restated: the first `sg` cookie whose value is the HMAC of a server still in the pool.
    const byValue = new Map(pool.map((s) => [sticky.valueFor(s), s]))
    let expected: UpstreamServer | undefined
    for (const [name, v] of cookies) {
      if (name !== 'sg') continue
      expected = byValue.get(/^\d$/.test(v) ? sticky.valueFor(SERVERS[Number(v)]!) : v)
      if (expected !== undefined) break
    }
    assert.equal(got, expected, parts.join('; '))
    if (got !== undefined) assert.ok(pool.includes(got))
  }), RUNS)
})
