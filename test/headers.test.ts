import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  filterResponseHeaders,
  headersAsEdited,
  normalizeHeaderOptions,
  rewriteRequestHeaders,
  type RewriteContext,
} from '../src/headers.js'
import { BadRequestError, InvalidOptionError } from '../src/errors.js'
import type { HeaderOptions } from '../src/types.js'

function context (overrides: Partial<RewriteContext> = {}): RewriteContext {
  return {
    peerAddress: '203.0.113.9',
    encrypted: false,
    localPort: 80,
    trusted: false,
    clientAddress: overrides.peerAddress ?? '203.0.113.9',
    upgrade: null,
    upstreamHost: '127.0.0.1:5001',
    ...overrides,
  }
}

function rewrite (raw: string[], ctx: Partial<RewriteContext> = {}, opts?: HeaderOptions): string[] {
  return rewriteRequestHeaders(raw, context(ctx), normalizeHeaderOptions(opts))
}

/** The flat list as [name, value] pairs, to compare whole outputs. */
function pairs (flat: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i] as string, flat[i + 1] as string])
  return out
}

/** Every value of one header, matched case-insensitively. */
function values (flat: readonly string[], name: string): string[] {
  return pairs(flat).filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v)
}

function invalidOption (pattern: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof InvalidOptionError, String(err))
    assert.equal(err.code, 'SOCKGATE_ERR_INVALID_OPTION')
    assert.match(err.message, pattern)
    return true
  }
}

const plain = { xForwarded: false }

// Hop-by-hop

test('headers: strips the hop-by-hop headers of RFC 9110 §7.6.1', () => {
  const out = rewrite([
    'Host', 'a.example',
    'Connection', 'keep-alive',
    'Keep-Alive', 'timeout=5',
    'Proxy-Connection', 'keep-alive',
    'TE', 'trailers',
    'Trailer', 'Expires',
    'Transfer-Encoding', 'chunked',
    'Upgrade', 'websocket',
    'Accept', '*/*',
  ], {}, plain)
  assert.deepEqual(pairs(out), [['Host', 'a.example'], ['Accept', '*/*']])
})

test('headers: drops names listed in Connection', () => {
  const out = rewrite(['Host', 'a.example', 'X-Secret', '1', 'Connection', 'close, x-secret, X-Other', 'x-other', '2', 'Accept', '*/*'], {}, plain)
  assert.deepEqual(pairs(out), [['Host', 'a.example'], ['Accept', '*/*']])
})

test('headers: drops names listed in any of several Connection headers', () => {
  const out = rewrite(['Connection', 'x-a', 'Connection', 'x-b', 'X-A', '1', 'X-B', '2', 'Host', 'a.example'], {}, plain)
  assert.deepEqual(pairs(out), [['Host', 'a.example']])
})

test('headers: keeps Host and Content-Length even when Connection lists them', () => {
  const out = rewrite(['Host', 'a.example', 'Content-Length', '3', 'Connection', 'host, content-length'], {}, plain)
  assert.deepEqual(pairs(out), [['Host', 'a.example'], ['Content-Length', '3']])
})

test('headers: Connection cannot remove the X-Forwarded-For sockgate adds', () => {
  const out = rewrite(['Host', 'a.example', 'Connection', 'X-Forwarded-For'])
  assert.deepEqual(values(out, 'x-forwarded-for'), ['203.0.113.9'])
})

test('headers: passes other headers through in order, with their case and duplicates', () => {
  const out = rewrite(['Host', 'a.example', 'x-LOWER', 'a', 'Cookie', 'a=1', 'Cookie', 'b=2', 'Accept', 'text/html'], {}, plain)
  assert.deepEqual(pairs(out), [['Host', 'a.example'], ['x-LOWER', 'a'], ['Cookie', 'a=1'], ['Cookie', 'b=2'], ['Accept', 'text/html']])
})

test('headers: drops Expect on plain requests', () => {
  const out = rewrite(['Host', 'a.example', 'Expect', '100-continue', 'Content-Length', '10'], {}, plain)
  assert.deepEqual(values(out, 'expect'), [])
})

test('headers: keeps Expect on upgrade requests', () => {
  const out = rewrite(['Host', 'a.example', 'Expect', '100-continue'], { upgrade: 'websocket' }, plain)
  assert.deepEqual(values(out, 'expect'), ['100-continue'])
})

// Upgrade

test('headers: an upgrade gets exactly Connection: upgrade and the client\'s Upgrade', () => {
  const out = rewrite([
    'Host', 'a.example',
    'Connection', 'keep-alive, Upgrade',
    'Upgrade', 'websocket',
    'Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version', '13',
  ], { upgrade: 'websocket' }, plain)
  assert.deepEqual(pairs(out), [
    ['Host', 'a.example'],
    ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
    ['Sec-WebSocket-Version', '13'],
    ['Connection', 'upgrade'],
    ['Upgrade', 'websocket'],
  ])
})

test('headers: a plain request sends neither Connection nor Upgrade', () => {
  const out = rewrite(['Host', 'a.example', 'Connection', 'Upgrade', 'Upgrade', 'h2c'], {}, plain)
  assert.deepEqual(values(out, 'connection'), [])
  assert.deepEqual(values(out, 'upgrade'), [])
})

test('headers: rejects an Upgrade value with CR or LF', () => {
  assert.throws(() => rewrite(['Host', 'a.example'], { upgrade: 'websocket\r\nX: 1' }), BadRequestError)
})

// Host

test('headers: host preserve forwards the client Host byte for byte', () => {
  const out = rewrite(['host', 'App.Example.COM:8080'], {}, plain)
  assert.deepEqual(pairs(out), [['host', 'App.Example.COM:8080']])
})

test('headers: host preserve without a client Host sends the upstream host first', () => {
  const out = rewrite(['Accept', '*/*'], {}, plain)
  assert.deepEqual(pairs(out), [['Host', '127.0.0.1:5001'], ['Accept', '*/*']])
})

test('headers: host upstream sends the upstream host:port in place of the client Host', () => {
  const out = rewrite(['Accept', '*/*', 'Host', 'a.example'], {}, { xForwarded: false, host: 'upstream' })
  assert.deepEqual(pairs(out), [['Accept', '*/*'], ['Host', '127.0.0.1:5001']])
})

test('headers: a fixed host replaces the client Host', () => {
  const out = rewrite(['Host', 'a.example'], {}, { xForwarded: false, host: 'internal.svc:8080' })
  assert.deepEqual(values(out, 'host'), ['internal.svc:8080'])
})

test('headers: a fixed host is sent when the client sent none', () => {
  const out = rewrite([], {}, { xForwarded: false, host: 'internal.svc' })
  assert.deepEqual(pairs(out), [['Host', 'internal.svc']])
})

test('headers: two Host headers are a bad request', () => {
  assert.throws(() => rewrite(['Host', 'a.example', 'Host', 'b.example']), (err: unknown) => {
    assert.ok(err instanceof BadRequestError)
    assert.equal(err.statusCode, 400)
    assert.match(err.message, /more than one Host/)
    return true
  })
})

// X-Forwarded-*

test('headers: an untrusted peer\'s spoofed X-Forwarded-For is replaced by the peer address', () => {
  const out = rewrite(['Host', 'a.example', 'X-Forwarded-For', '1.2.3.4', 'x-forwarded-for', '5.6.7.8'])
  assert.deepEqual(values(out, 'x-forwarded-for'), ['203.0.113.9'])
})

test('headers: an untrusted peer\'s X-Forwarded-Proto, -Host and -Port are replaced by this hop\'s', () => {
  const out = rewrite([
    'Host', 'a.example',
    'X-Forwarded-Proto', 'https',
    'X-Forwarded-Host', 'evil.example',
    'X-Forwarded-Port', '443',
  ], { localPort: 8080 })
  assert.deepEqual(values(out, 'x-forwarded-proto'), ['http'])
  assert.deepEqual(values(out, 'x-forwarded-host'), ['a.example'])
  assert.deepEqual(values(out, 'x-forwarded-port'), ['8080'])
})

test('headers: an untrusted peer\'s X-Real-IP and Forwarded are dropped', () => {
  const out = rewrite(['Host', 'a.example', 'X-Real-IP', '1.2.3.4', 'Forwarded', 'for=1.2.3.4'])
  assert.deepEqual(values(out, 'x-real-ip'), [])
  assert.deepEqual(values(out, 'forwarded'), [])
})

test('headers: a trusted peer\'s X-Forwarded-For chain is kept and the peer appended', () => {
  const out = rewrite(['Host', 'a.example', 'X-Forwarded-For', '198.51.100.7, 10.0.0.2'], { peerAddress: '10.0.0.1', trusted: true })
  assert.deepEqual(values(out, 'x-forwarded-for'), ['198.51.100.7, 10.0.0.2, 10.0.0.1'])
})

test('headers: a trusted peer\'s several X-Forwarded-For headers are merged into one', () => {
  const out = rewrite(['X-Forwarded-For', '198.51.100.7', 'Host', 'a.example', 'x-forwarded-for', '10.0.0.2'], { peerAddress: '10.0.0.1', trusted: true })
  assert.deepEqual(values(out, 'x-forwarded-for'), ['198.51.100.7, 10.0.0.2, 10.0.0.1'])
})

test('headers: a trusted peer\'s X-Forwarded-Proto, -Host and -Port are kept', () => {
  const out = rewrite([
    'Host', 'internal',
    'X-Forwarded-Proto', 'https',
    'X-Forwarded-Host', 'app.example',
    'X-Forwarded-Port', '443',
  ], { trusted: true })
  assert.deepEqual(values(out, 'x-forwarded-proto'), ['https'])
  assert.deepEqual(values(out, 'x-forwarded-host'), ['app.example'])
  assert.deepEqual(values(out, 'x-forwarded-port'), ['443'])
})

test('headers: a trusted peer that sent no X-Forwarded-Proto gets this hop\'s', () => {
  const out = rewrite(['Host', 'a.example'], { trusted: true, encrypted: true })
  assert.deepEqual(values(out, 'x-forwarded-proto'), ['https'])
})

test('headers: X-Forwarded-Proto is https on a TLS connection', () => {
  assert.deepEqual(values(rewrite(['Host', 'a.example'], { encrypted: true }), 'x-forwarded-proto'), ['https'])
})

test('headers: adds X-Forwarded-For, -Proto, -Host and -Port after the client\'s headers', () => {
  const out = rewrite(['Host', 'App.example:8080', 'Accept', '*/*'], { localPort: 8080 })
  assert.deepEqual(pairs(out), [
    ['Host', 'App.example:8080'],
    ['Accept', '*/*'],
    ['X-Forwarded-For', '203.0.113.9'],
    ['X-Forwarded-Proto', 'http'],
    ['X-Forwarded-Host', 'App.example:8080'],
    ['X-Forwarded-Port', '8080'],
  ])
})

test('headers: X-Forwarded-Host is left out when the client sent no Host', () => {
  assert.deepEqual(values(rewrite([]), 'x-forwarded-host'), [])
})

test('headers: X-Forwarded-Host is the client Host even when host is upstream', () => {
  const out = rewrite(['Host', 'a.example'], {}, { host: 'upstream' })
  assert.deepEqual(values(out, 'x-forwarded-host'), ['a.example'])
})

test('headers: the peer address is sent without ::ffff:', () => {
  const out = rewrite(['Host', 'a.example'], { peerAddress: '::ffff:203.0.113.9' })
  assert.deepEqual(values(out, 'x-forwarded-for'), ['203.0.113.9'])
})

test('headers: an IPv6 peer is sent as is in X-Forwarded-For', () => {
  const out = rewrite(['Host', 'a.example'], { peerAddress: '2001:db8::1' })
  assert.deepEqual(values(out, 'x-forwarded-for'), ['2001:db8::1'])
})

test('headers: xForwarded false adds no forwarding headers', () => {
  const out = rewrite(['Host', 'a.example'], {}, { xForwarded: false })
  assert.deepEqual(pairs(out), [['Host', 'a.example']])
})

test('headers: xForwarded false still drops an untrusted peer\'s forwarding headers', () => {
  const out = rewrite([
    'Host', 'a.example',
    'X-Forwarded-For', '1.2.3.4',
    'X-Forwarded-Proto', 'https',
    'X-Forwarded-Host', 'evil.example',
    'X-Forwarded-Port', '443',
    'X-Real-IP', '1.2.3.4',
    'Forwarded', 'for=1.2.3.4',
  ], {}, { xForwarded: false })
  assert.deepEqual(pairs(out), [['Host', 'a.example']])
})

test('headers: xForwarded false passes a trusted peer\'s forwarding headers unchanged', () => {
  const raw = ['Host', 'a.example', 'X-Forwarded-For', '1.2.3.4', 'X-Forwarded-Proto', 'https', 'X-Real-IP', '1.2.3.4']
  const out = rewrite(raw, { trusted: true }, { xForwarded: false })
  assert.deepEqual(out, raw)
})

// Forwarded

test('headers: forwarded adds an RFC 7239 element for this hop', () => {
  const out = rewrite(['Host', 'a.example'], {}, { forwarded: true })
  assert.deepEqual(values(out, 'forwarded'), ['for=203.0.113.9;proto=http;host=a.example'])
})

test('headers: forwarded quotes an IPv6 node in brackets', () => {
  const out = rewrite(['Host', 'a.example'], { peerAddress: '::1', encrypted: true }, { forwarded: true })
  assert.deepEqual(values(out, 'forwarded'), ['for="[::1]";proto=https;host=a.example'])
})

test('headers: forwarded quotes a host with a port', () => {
  const out = rewrite(['Host', 'a.example:8080'], {}, { forwarded: true })
  assert.deepEqual(values(out, 'forwarded'), ['for=203.0.113.9;proto=http;host="a.example:8080"'])
})

test('headers: forwarded writes ::ffff: peers as IPv4', () => {
  const out = rewrite(['Host', 'a.example'], { peerAddress: '::ffff:127.0.0.1' }, { forwarded: true })
  assert.deepEqual(values(out, 'forwarded'), ['for=127.0.0.1;proto=http;host=a.example'])
})

test('headers: forwarded appends to a trusted peer\'s Forwarded', () => {
  const out = rewrite(['Host', 'a.example', 'Forwarded', 'for=198.51.100.7', 'Forwarded', 'for=10.0.0.2'],
    { peerAddress: '10.0.0.1', trusted: true }, { forwarded: true })
  assert.deepEqual(values(out, 'forwarded'), ['for=198.51.100.7, for=10.0.0.2, for=10.0.0.1;proto=http;host=a.example'])
})

test('headers: forwarded replaces an untrusted peer\'s Forwarded', () => {
  const out = rewrite(['Host', 'a.example', 'Forwarded', 'for=1.2.3.4'], {}, { forwarded: true })
  assert.deepEqual(values(out, 'forwarded'), ['for=203.0.113.9;proto=http;host=a.example'])
})

// X-Real-IP

test('headers: xRealIp sends the resolved client address', () => {
  const out = rewrite(['Host', 'a.example'], { peerAddress: '10.0.0.1', trusted: true, clientAddress: '198.51.100.7' }, { xRealIp: true })
  assert.deepEqual(values(out, 'x-real-ip'), ['198.51.100.7'])
})

test('headers: xRealIp replaces an untrusted peer\'s X-Real-IP', () => {
  const out = rewrite(['Host', 'a.example', 'X-Real-IP', '1.2.3.4'], {}, { xRealIp: true })
  assert.deepEqual(values(out, 'x-real-ip'), ['203.0.113.9'])
})

test('headers: xRealIp replaces a trusted peer\'s X-Real-IP with the resolved address', () => {
  const out = rewrite(['Host', 'a.example', 'X-Real-IP', '1.2.3.4'], { trusted: true, clientAddress: '198.51.100.7' }, { xRealIp: true })
  assert.deepEqual(values(out, 'x-real-ip'), ['198.51.100.7'])
})

test('headers: xRealIp writes a mapped client address as IPv4', () => {
  const out = rewrite(['Host', 'a.example'], { peerAddress: '::ffff:127.0.0.1', clientAddress: '::ffff:127.0.0.1' }, { xRealIp: true })
  assert.deepEqual(values(out, 'x-real-ip'), ['127.0.0.1'])
})

// remove and set

test('headers: remove drops a client header whatever its case', () => {
  const out = rewrite(['Host', 'a.example', 'X-Debug', '1', 'x-debug', '2'], {}, { xForwarded: false, remove: ['x-DEBUG'] })
  assert.deepEqual(pairs(out), [['Host', 'a.example']])
})

test('headers: remove also drops a header sockgate would add', () => {
  const out = rewrite(['Host', 'a.example'], {}, { remove: ['X-Forwarded-Port'] })
  assert.deepEqual(values(out, 'x-forwarded-port'), [])
  assert.deepEqual(values(out, 'x-forwarded-for'), ['203.0.113.9'])
})

test('headers: set adds a header with a lower-case name', () => {
  const out = rewrite(['Host', 'a.example'], {}, { xForwarded: false, set: { 'X-Gateway': 'sockgate' } })
  assert.deepEqual(pairs(out), [['Host', 'a.example'], ['x-gateway', 'sockgate']])
})

test('headers: set replaces every client header of the same name', () => {
  const out = rewrite(['Host', 'a.example', 'X-Tenant', 'evil', 'x-tenant', 'evil2'], {}, { xForwarded: false, set: { 'X-Tenant': 'blue' } })
  assert.deepEqual(values(out, 'x-tenant'), ['blue'])
})

test('headers: set replaces a header sockgate adds', () => {
  const out = rewrite(['Host', 'a.example'], {}, { set: { 'X-Forwarded-Proto': 'https' } })
  assert.deepEqual(values(out, 'x-forwarded-proto'), ['https'])
})

test('headers: set replaces a trusted peer\'s forwarding header', () => {
  const out = rewrite(['Host', 'a.example', 'X-Forwarded-Proto', 'http'], { trusted: true }, { set: { 'x-forwarded-proto': 'https' } })
  assert.deepEqual(values(out, 'x-forwarded-proto'), ['https'])
})

// CR, LF and NUL

test('headers: a value with CR is a bad request', () => {
  assert.throws(() => rewrite(['Host', 'a.example', 'X-A', 'a\rb']), BadRequestError)
})

test('headers: a value with LF is a bad request', () => {
  assert.throws(() => rewrite(['Host', 'a.example', 'X-A', 'a\nX-B: b']), (err: unknown) => {
    assert.ok(err instanceof BadRequestError)
    assert.equal(err.code, 'SOCKGATE_ERR_BAD_REQUEST')
    assert.match(err.message, /"X-A" contains CR, LF or NUL/)
    return true
  })
})

test('headers: a value with NUL is a bad request', () => {
  assert.throws(() => rewrite(['Host', 'a.example', 'X-A', 'a\0b']), BadRequestError)
})

test('headers: a name with CR or LF is a bad request', () => {
  assert.throws(() => rewrite(['Host', 'a.example', 'X-A\r\nX-B', 'x']), BadRequestError)
})

test('headers: a Host with LF is a bad request even when it would be replaced', () => {
  assert.throws(() => rewrite(['Host', 'a\n.example'], {}, { host: 'upstream' }), BadRequestError)
})

// Responses

test('headers: filterResponseHeaders drops hop-by-hop headers', () => {
  const out = filterResponseHeaders({
    'content-type': 'text/plain',
    connection: 'keep-alive',
    'keep-alive': 'timeout=5',
    'transfer-encoding': 'chunked',
    'proxy-connection': 'keep-alive',
    te: 'trailers',
    trailer: 'expires',
    upgrade: 'h2c',
  })
  assert.deepEqual({ ...out }, { 'content-type': 'text/plain' })
})

test('headers: filterResponseHeaders drops names listed in Connection', () => {
  const out = filterResponseHeaders({ connection: 'close, x-hop', 'x-hop': '1', 'x-end': '2' })
  assert.deepEqual({ ...out }, { 'x-end': '2' })
})

test('headers: filterResponseHeaders reads every value of a repeated Connection', () => {
  const out = filterResponseHeaders({ connection: ['x-a', 'X-B'], 'x-a': '1', 'x-b': '2', 'x-c': '3' })
  assert.deepEqual({ ...out }, { 'x-c': '3' })
})

test('headers: filterResponseHeaders keeps set-cookie as an array', () => {
  const out = filterResponseHeaders({ 'set-cookie': ['a=1; Path=/', 'b=2; Path=/'], 'content-length': '0' })
  assert.deepEqual(out['set-cookie'], ['a=1; Path=/', 'b=2; Path=/'])
  assert.equal(out['content-length'], '0')
})

test('headers: filterResponseHeaders keeps Content-Length even when Connection lists it', () => {
  const out = filterResponseHeaders({ connection: 'content-length', 'content-length': '5' })
  assert.deepEqual({ ...out }, { 'content-length': '5' })
})

test('headers: filterResponseHeaders skips undefined values', () => {
  assert.deepEqual({ ...filterResponseHeaders({ 'x-a': undefined, 'x-b': 'b' }) }, { 'x-b': 'b' })
})

test('headers: filterResponseHeaders keeps a field named __proto__ as a plain key', () => {
  const out = filterResponseHeaders(JSON.parse('{"__proto__":"x","a":"b"}') as Record<string, string>)
  assert.equal(Object.getPrototypeOf(out), null)
  assert.deepEqual(Object.keys(out), ['__proto__', 'a'])
})

// normalizeHeaderOptions

test('headers: options default to X-Forwarded-* on, Forwarded and X-Real-IP off, Host preserved', () => {
  const opts = normalizeHeaderOptions(undefined)
  assert.equal(opts.xForwarded, true)
  assert.equal(opts.forwarded, false)
  assert.equal(opts.xRealIp, false)
  assert.deepEqual(opts.host, { kind: 'preserve' })
  assert.deepEqual(opts.set, [])
  assert.equal(opts.remove.size, 0)
})

test('headers: an empty options object gives the defaults', () => {
  assert.deepEqual(normalizeHeaderOptions({}), normalizeHeaderOptions(undefined))
})

test('headers: normalized options are frozen', () => {
  const opts = normalizeHeaderOptions({ set: { 'X-A': '1' } })
  assert.ok(Object.isFrozen(opts))
  assert.ok(Object.isFrozen(opts.set))
})

test('headers: host upstream and fixed hosts are compiled', () => {
  assert.deepEqual(normalizeHeaderOptions({ host: 'upstream' }).host, { kind: 'upstream' })
  assert.deepEqual(normalizeHeaderOptions({ host: '[::1]:8080' }).host, { kind: 'fixed', value: '[::1]:8080' })
})

test('headers: set and remove names are lower-cased', () => {
  const opts = normalizeHeaderOptions({ set: { 'X-Gateway': 'sg' }, remove: ['X-Debug'] })
  assert.deepEqual(opts.set, [['x-gateway', 'sg']])
  assert.deepEqual([...opts.remove], ['x-debug'])
})

test('headers: a set value with CR, LF or NUL is refused, naming the option path', () => {
  assert.throws(() => normalizeHeaderOptions({ set: { 'X-Foo': 'a\r\nb' } }), invalidOption(/^headers\.set\.X-Foo must not contain CR, LF or NUL$/))
  assert.throws(() => normalizeHeaderOptions({ set: { 'X-Foo': 'a\0b' } }), invalidOption(/^headers\.set\.X-Foo must not contain CR, LF or NUL$/))
})

test('headers: a set value with another control character is refused', () => {
  assert.throws(() => normalizeHeaderOptions({ set: { 'X-Foo': 'a\u0007b' } }), invalidOption(/^headers\.set\.X-Foo must contain only visible characters/))
})

test('headers: a set value that is not a string is refused', () => {
  assert.throws(() => normalizeHeaderOptions({ set: { 'X-Foo': 1 as unknown as string } }), invalidOption(/^headers\.set\.X-Foo must be a string/))
})

test('headers: a set name that is not an RFC 9110 token is refused', () => {
  assert.throws(() => normalizeHeaderOptions({ set: { 'X Foo': '1' } }), invalidOption(/^headers\.set\["X Foo"\] is not a valid header name/))
  assert.throws(() => normalizeHeaderOptions({ set: { 'X-Foo:': '1' } }), invalidOption(/is not a valid header name/))
})

test('headers: set refuses Host and points to the host option', () => {
  assert.throws(() => normalizeHeaderOptions({ set: { Host: 'a.example' } }), invalidOption(/^headers\.set\.Host is not allowed: use headers\.host/))
})

test('headers: set refuses Connection and Upgrade', () => {
  assert.throws(() => normalizeHeaderOptions({ set: { Connection: 'upgrade' } }), invalidOption(/^headers\.set\.Connection is not allowed/))
  assert.throws(() => normalizeHeaderOptions({ set: { Upgrade: 'websocket' } }), invalidOption(/^headers\.set\.Upgrade is not allowed/))
})

test('headers: set refuses framing headers', () => {
  assert.throws(() => normalizeHeaderOptions({ set: { 'Transfer-Encoding': 'chunked' } }), invalidOption(/^headers\.set\.Transfer-Encoding is not allowed/))
  assert.throws(() => normalizeHeaderOptions({ set: { 'Content-Length': '0' } }), invalidOption(/^headers\.set\.Content-Length is not allowed/))
})

test('headers: set refuses an nginx variable as a value', () => {
  assert.throws(() => normalizeHeaderOptions({ set: { 'X-Real-IP': '$remote_addr' } }), invalidOption(/^headers\.set\.X-Real-IP looks like an nginx variable/))
})

test('headers: set refuses the same name twice in different case', () => {
  assert.throws(() => normalizeHeaderOptions({ set: { 'X-A': '1', 'x-a': '2' } }), invalidOption(/^headers\.set\.x-a is given twice/))
})

test('headers: set must be an object', () => {
  assert.throws(() => normalizeHeaderOptions({ set: [['X-A', '1']] as unknown as Record<string, string> }), invalidOption(/^headers\.set must be an object/))
})

test('headers: remove must be a list', () => {
  assert.throws(() => normalizeHeaderOptions({ remove: 'x-a' as unknown as string[] }), invalidOption(/^headers\.remove must be a list/))
})

test('headers: a remove entry that is not a token is refused, naming its index', () => {
  assert.throws(() => normalizeHeaderOptions({ remove: ['x-a', 'x b'] }), invalidOption(/^headers\.remove\[1\] is not a valid header name/))
})

test('headers: remove refuses Host and Content-Length', () => {
  assert.throws(() => normalizeHeaderOptions({ remove: ['Host'] }), invalidOption(/^headers\.remove\[0\] cannot remove Host/))
  assert.throws(() => normalizeHeaderOptions({ remove: ['content-length'] }), invalidOption(/^headers\.remove\[0\] cannot remove content-length/))
})

test('headers: remove refuses hop-by-hop names, which it could not affect', () => {
  assert.throws(() => normalizeHeaderOptions({ remove: ['Upgrade'] }), invalidOption(/^headers\.remove\[0\] has no effect/))
})

test('headers: a name both set and removed is refused', () => {
  assert.throws(() => normalizeHeaderOptions({ set: { 'X-A': '1' }, remove: ['x-a'] }), invalidOption(/^headers\.remove\[0\] \(x-a\) is also in headers\.set/))
})

test('headers: a flag that is not a boolean is refused', () => {
  assert.throws(() => normalizeHeaderOptions({ xForwarded: 'yes' as unknown as boolean }), invalidOption(/^headers\.xForwarded must be true or false/))
  assert.throws(() => normalizeHeaderOptions({ forwarded: 1 as unknown as boolean }), invalidOption(/^headers\.forwarded must be true or false/))
  assert.throws(() => normalizeHeaderOptions({ xRealIp: null as unknown as boolean }), invalidOption(/^headers\.xRealIp must be true or false/))
})

test('headers: a fixed host with CR or LF is refused', () => {
  assert.throws(() => normalizeHeaderOptions({ host: 'a.example\r\nX: 1' }), invalidOption(/^headers\.host must not contain CR, LF or NUL$/))
})

test('headers: a fixed host that is not host[:port] is refused', () => {
  assert.throws(() => normalizeHeaderOptions({ host: 'http://a.example/' }), invalidOption(/^headers\.host must be 'preserve', 'upstream' or a host name/))
  assert.throws(() => normalizeHeaderOptions({ host: '' }), invalidOption(/^headers\.host must be/))
})

test('headers: an unknown option is refused', () => {
  assert.throws(() => normalizeHeaderOptions({ xForward: true } as unknown as HeaderOptions), invalidOption(/^headers\.xForward is not an option \(expected/))
})

test('headers: an http-proxy option name is refused with the sockgate spelling', () => {
  assert.throws(() => normalizeHeaderOptions({ changeOrigin: true } as unknown as HeaderOptions), invalidOption(/^headers\.changeOrigin is not an option: use headers\.host: 'upstream'$/))
  assert.throws(() => normalizeHeaderOptions({ xfwd: true } as unknown as HeaderOptions), invalidOption(/use headers\.xForwarded$/))
})

test('headers: options must be an object', () => {
  assert.throws(() => normalizeHeaderOptions(null as unknown as HeaderOptions), invalidOption(/^headers must be an object$/))
})

test('headers: errors name the option path they were given', () => {
  assert.throws(() => normalizeHeaderOptions({ set: { 'X-Foo': '\n' } }, 'routes[0].headers'), invalidOption(/^routes\[0\]\.headers\.set\.X-Foo must not contain CR, LF or NUL$/))
})

// headersAsEdited: what earlier middleware did to req.headers

/** `req.headers` as Node builds it from a raw list: lower-case names, repeats joined (Cookie with "; "). */
function parsedFrom (raw: string[]): Record<string, string> {
  const headers: Record<string, string> = {}
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase()
    const v = raw[i + 1]!
    headers[lower] = headers[lower] === undefined ? v : `${headers[lower]}${lower === 'cookie' ? '; ' : ', '}${v}`
  }
  return headers
}

test('headersAsEdited: untouched headers give back the very rawHeaders array', () => {
  const raw = ['Host', 'a.test', 'X-One', '1']
  assert.equal(headersAsEdited(raw, parsedFrom(raw)), raw)
})

test('headersAsEdited: repeated fields Node joined, and untouched, keep every raw line', () => {
  const raw = ['Accept', 'a', 'accept', 'b', 'Cookie', 'x=1', 'cookie', 'y=2']
  assert.deepEqual(headersAsEdited(raw, parsedFrom(raw)), raw)
})

test('headersAsEdited: a changed field takes its new value at its first place, once', () => {
  const raw = ['Host', 'a.test', 'Accept', 'a', 'accept', 'b', 'X-Last', '1']
  assert.deepEqual(headersAsEdited(raw, { ...parsedFrom(raw), accept: 'text/html' }), ['Host', 'a.test', 'Accept', 'text/html', 'X-Last', '1'])
})

test('headersAsEdited: a deleted field goes and an added one comes last, arrays as repeated lines', () => {
  const raw = ['Host', 'a.test', 'X-Secret', 's']
  const headers: Record<string, string | string[] | undefined> = { ...parsedFrom(raw), 'x-user': 'ann', 'x-roles': ['a', 'b'] }
  delete headers['x-secret']
  assert.deepEqual(headersAsEdited(raw, headers), ['Host', 'a.test', 'x-user', 'ann', 'x-roles', 'a', 'x-roles', 'b'])
})

test('headersAsEdited: a field set to undefined counts as deleted', () => {
  const raw = ['Host', 'a.test', 'Authorization', 'Bearer t']
  assert.deepEqual(headersAsEdited(raw, { ...parsedFrom(raw), authorization: undefined }), ['Host', 'a.test'])
})

test('headersAsEdited: an edited value with CR LF is refused by the rewriter after it, never sent', () => {
  const raw = ['Host', 'a.test']
  const edited = headersAsEdited(raw, { host: 'a.test', 'x-evil': 'a\r\nX-Injected: 1' })
  assert.throws(() => rewriteRequestHeaders(edited, context(), normalizeHeaderOptions(undefined)), { code: 'SOCKGATE_ERR_BAD_REQUEST' })
})
