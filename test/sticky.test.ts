import { test } from 'node:test'
import assert from 'node:assert/strict'
import { UpstreamServer } from '../src/upstream/server.js'
import {
  createCookieSticky,
  defaultStickySecret,
  SessionTable,
  sidFromOpenPacket,
  sidFromQuery,
} from '../src/balance/sticky.js'
import { normalizeOptions } from '../src/options.js'

function server (url: string): UpstreamServer {
  return new UpstreamServer({ url, name: null, weight: 1, backup: false, down: false, maxConns: 0 })
}

function pool (): UpstreamServer[] {
  return [server('http://10.0.0.1:5001'), server('http://10.0.0.2:5002'), server('http://10.0.0.3:5003')]
}

/** The `NAME=VALUE` part of a Set-Cookie value, usable as a Cookie header. */
function cookiePair (setCookie: string): string {
  return setCookie.split(';')[0]!
}

// ---------------------------------------------------------------- cookie

test('cookie: the cookie set for a server reads back as that server', () => {
  const servers = pool()
  const sticky = createCookieSticky({ name: 'sg_upstream', secret: 's3cret' })
  for (const s of servers) assert.equal(sticky.serverFor(cookiePair(sticky.setCookie(s, false)), servers), s)
})

test('cookie: a forged value gives undefined', () => {
  const servers = pool()
  const sticky = createCookieSticky({ name: 'sg_upstream', secret: 's3cret' })
  const real = sticky.valueFor(servers[0]!)
  const forged = (real[0] === 'A' ? 'B' : 'A') + real.slice(1)
  assert.equal(sticky.serverFor(`sg_upstream=${forged}`, servers), undefined)
  assert.equal(sticky.serverFor('sg_upstream=http://10.0.0.1:5001', servers), undefined)
  assert.equal(sticky.serverFor('sg_upstream=', servers), undefined)
})

test('cookie: a value made with another secret gives undefined', () => {
  const servers = pool()
  const ours = createCookieSticky({ name: 'sg', secret: 'one' })
  const theirs = createCookieSticky({ name: 'sg', secret: 'two' })
  assert.notEqual(ours.valueFor(servers[0]!), theirs.valueFor(servers[0]!))
  assert.equal(ours.serverFor(`sg=${theirs.valueFor(servers[0]!)}`, servers), undefined)
})

test('cookie: a value for a server no longer in the pool gives undefined', () => {
  const servers = pool()
  const sticky = createCookieSticky({ name: 'sg', secret: 'x' })
  const gone = `sg=${sticky.valueFor(servers[2]!)}`
  assert.equal(sticky.serverFor(gone, servers.slice(0, 2)), undefined)
})

test('cookie: finds its cookie among several, with or without spaces', () => {
  const servers = pool()
  const sticky = createCookieSticky({ name: 'sg', secret: 'x' })
  const v = sticky.valueFor(servers[1]!)
  assert.equal(sticky.serverFor(`a=1; xsg=nope;sg=${v};  b=2`, servers), servers[1])
  assert.equal(sticky.serverFor(`a=1;sg=${v}`, servers), servers[1])
  assert.equal(sticky.serverFor(`  sg=${v}  `, servers), servers[1])
})

test('cookie: with several cookies of its name, the first valid one wins', () => {
  const servers = pool()
  const sticky = createCookieSticky({ name: 'sg', secret: 'x' })
  const header = `sg=stale-value-from-old-secret; sg=${sticky.valueFor(servers[2]!)}; sg=${sticky.valueFor(servers[0]!)}`
  assert.equal(sticky.serverFor(header, servers), servers[2])
})

test('cookie: a quoted value is accepted', () => {
  const servers = pool()
  const sticky = createCookieSticky({ name: 'sg', secret: 'x' })
  assert.equal(sticky.serverFor(`sg="${sticky.valueFor(servers[0]!)}"`, servers), servers[0])
})

test('cookie: no header, or no cookie of its name, gives undefined', () => {
  const servers = pool()
  const sticky = createCookieSticky({ name: 'sg', secret: 'x' })
  assert.equal(sticky.serverFor(undefined, servers), undefined)
  assert.equal(sticky.serverFor('', servers), undefined)
  assert.equal(sticky.serverFor('other=1; more=2', servers), undefined)
})

test('cookie: the value does not contain the server url, host or port', () => {
  const sticky = createCookieSticky({ name: 'sg', secret: 'x' })
  const s = server('http://10.0.0.1:5001')
  const value = sticky.valueFor(s)
  for (const part of [s.url, s.hostname, String(s.port), '10.0.0.1', encodeURIComponent(s.url)]) {
    assert.ok(!value.includes(part), `${value} contains ${part}`)
  }
  assert.ok(!Buffer.from(value, 'base64url').toString('latin1').includes('10.0.0.1'))
})

test('cookie: the value is 22 base64url characters', () => {
  const sticky = createCookieSticky({ name: 'sg', secret: 'x' })
  assert.match(sticky.valueFor(server('http://10.0.0.1:5001')), /^[A-Za-z0-9_-]{22}$/)
})

test('cookie: two gateway instances with the same secret agree on values', () => {
  const a = createCookieSticky({ name: 'sg', secret: 'shared' })
  const b = createCookieSticky({ name: 'sg', secret: 'shared' })
  const mine = pool()
  const theirs = pool()
  for (let i = 0; i < mine.length; i++) {
    assert.equal(b.serverFor(`sg=${a.valueFor(mine[i]!)}`, theirs), theirs[i])
  }
})

test('cookie: setCookie has Path, HttpOnly and SameSite=Lax, and Secure only when asked', () => {
  const sticky = createCookieSticky({ name: 'sg', secret: 'x' })
  const s = server('http://10.0.0.1:5001')
  const v = sticky.valueFor(s)
  assert.equal(sticky.setCookie(s, false), `sg=${v}; Path=/; HttpOnly; SameSite=Lax`)
  assert.equal(sticky.setCookie(s, true), `sg=${v}; Path=/; HttpOnly; SameSite=Lax; Secure`)
})

test('cookie: setCookie adds Max-Age in seconds when maxAge is set', () => {
  const sticky = createCookieSticky({ name: 'sg', secret: 'x', maxAge: 3600 })
  assert.match(sticky.setCookie(server('http://10.0.0.1:5001'), false), /; Max-Age=3600(;|$)/)
})

test('cookie: a name that is not a cookie token is refused', () => {
  for (const name of ['', 'a b', 'a;b', 'a=b', 'a\r\nSet-Cookie: x']) {
    const options = { target: ['http://10.0.0.1:5001', 'http://10.0.0.2:5002'], sticky: { cookie: name } }
    assert.throws(() => normalizeOptions(options), { code: 'SOCKGATE_ERR_INVALID_OPTION' })
  }
})

test('defaultStickySecret: the same pool and urls in any order give the same secret', () => {
  const urls = ['http://10.0.0.1:5001', 'http://10.0.0.2:5002']
  assert.equal(defaultStickySecret('socket_nodes', urls), defaultStickySecret('socket_nodes', [...urls].reverse()))
  assert.match(defaultStickySecret('socket_nodes', urls), /^[0-9a-f]{64}$/)
})

test('defaultStickySecret: another pool name or url list gives another secret', () => {
  const urls = ['http://10.0.0.1:5001', 'http://10.0.0.2:5002']
  const base = defaultStickySecret('socket_nodes', urls)
  assert.notEqual(defaultStickySecret('other', urls), base)
  assert.notEqual(defaultStickySecret('socket_nodes', urls.slice(0, 1)), base)
  assert.notEqual(defaultStickySecret('a', ['b,c']), defaultStickySecret('a', ['b', 'c']))
})

// ---------------------------------------------------------------- SessionTable

function clock (): { now: () => number, advance: (ms: number) => void } {
  let t = 1_000_000
  return { now: () => t, advance: (ms) => { t += ms } }
}

test('SessionTable: an entry idle longer than idleMs is gone', () => {
  const c = clock()
  const table = new SessionTable<string>({ idleMs: 1000, now: c.now })
  table.set('abc', 'server-1')
  c.advance(1000)
  assert.equal(table.get('abc'), 'server-1')
  c.advance(1001)
  assert.equal(table.get('abc'), undefined)
  assert.equal(table.size, 0)
})

test('SessionTable: a read counts as activity and keeps the entry alive', () => {
  const c = clock()
  const table = new SessionTable<string>({ idleMs: 1000, now: c.now })
  table.set('abc', 'server-1')
  for (let i = 0; i < 5; i++) {
    c.advance(800)
    assert.equal(table.get('abc'), 'server-1')
  }
})

test('SessionTable: due says yes once per interval for a live sid, and never for an unknown one', () => {
  const c = clock()
  const table = new SessionTable<string>({ idleMs: 1000, now: c.now })
  table.set('abc', 'server-1')
  assert.equal(table.due('abc', 250), false, 'just set')
  c.advance(251)
  assert.equal(table.due('abc', 250), true)
  assert.equal(table.due('abc', 250), false, 'once per interval')
  c.advance(251)
  assert.equal(table.due('abc', 250), true)
  assert.equal(table.due('nope', 250), false)
})

test('SessionTable: past max the least recently used entry is evicted', () => {
  const c = clock()
  const table = new SessionTable<number>({ max: 3, now: c.now })
  table.set('a', 1).set('b', 2).set('c', 3)
  assert.equal(table.get('a'), 1) // a is now the most recent; b the oldest
  table.set('d', 4)
  assert.equal(table.size, 3)
  assert.equal(table.get('b'), undefined)
  assert.deepEqual([table.get('a'), table.get('c'), table.get('d')], [1, 3, 4])
})

test('SessionTable: setting an existing sid replaces its value without growing', () => {
  const table = new SessionTable<number>({ max: 2 })
  table.set('a', 1).set('b', 2).set('a', 3)
  assert.equal(table.size, 2)
  assert.equal(table.get('a'), 3)
  assert.equal(table.get('b'), 2)
})

test('SessionTable: set sweeps expired entries from the oldest end', () => {
  const c = clock()
  const table = new SessionTable<number>({ idleMs: 1000, now: c.now })
  table.set('old1', 1).set('old2', 2)
  c.advance(600)
  table.set('young', 3)
  c.advance(600)
  table.set('new', 4)
  assert.equal(table.size, 2)
  assert.equal(table.get('young'), 3)
})

test('SessionTable: deleteWhere removes the matching entries and counts them', () => {
  const table = new SessionTable<string>()
  table.set('a', 's1').set('b', 's2').set('c', 's1')
  assert.equal(table.deleteWhere((server) => server === 's1'), 2)
  assert.equal(table.size, 1)
  assert.equal(table.get('b'), 's2')
})

test('SessionTable: delete forgets one sid', () => {
  const table = new SessionTable<string>()
  table.set('a', 's1').set('b', 's2')
  assert.equal(table.delete('a'), true)
  assert.equal(table.delete('a'), false)
  assert.equal(table.get('a'), undefined)
  assert.equal(table.get('b'), 's2')
})

// ---------------------------------------------------------------- sid parsers

test('sidFromQuery: reads sid from a polling request target', () => {
  assert.equal(sidFromQuery('/socket.io/?EIO=4&transport=polling&sid=abc'), 'abc')
  assert.equal(sidFromQuery('/socket.io/?sid=Xy_-9z&EIO=4'), 'Xy_-9z')
  assert.equal(sidFromQuery('/socket.io/?EIO=3&transport=polling&t=NQx&sid=abc#frag'), 'abc')
})

test('sidFromQuery: decodes a percent-encoded sid', () => {
  assert.equal(sidFromQuery('/socket.io/?EIO=4&sid=a%2Fb%3D'), 'a/b=')
  assert.equal(sidFromQuery('/socket.io/?EIO=4&sid=%E0%A4%A'), undefined)
})

test('sidFromQuery: undefined without a sid parameter', () => {
  assert.equal(sidFromQuery('/socket.io/?EIO=4&transport=polling'), undefined)
  assert.equal(sidFromQuery('/socket.io/?EIO=4&xsid=abc'), undefined)
  assert.equal(sidFromQuery('/sid=abc/socket.io/?EIO=4'), undefined)
  assert.equal(sidFromQuery('/sid=abc'), undefined)
  assert.equal(sidFromQuery('/socket.io/?EIO=4#&sid=abc'), undefined)
  assert.equal(sidFromQuery('/socket.io/?EIO=4&sid=&t=1'), undefined)
})

test('sidFromQuery: a whole sid parameter is found after a look-alike', () => {
  assert.equal(sidFromQuery('/socket.io/?xsid=no&sid=yes'), 'yes')
})

test('sidFromOpenPacket: reads an EIO=4 open packet', () => {
  const body = '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
  assert.equal(sidFromOpenPacket(body), 'lv_VI97HAXpY6yYWAAAC')
})

test('sidFromOpenPacket: reads an EIO=3 length-prefixed open packet', () => {
  const body = '96:0{"sid":"ptzi_578ycUci8WLAAAA","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}2:40'
  assert.equal(sidFromOpenPacket(body), 'ptzi_578ycUci8WLAAAA')
})

test('sidFromOpenPacket: works on the first bytes of a body only', () => {
  assert.equal(sidFromOpenPacket('0{"sid":"abc","upgr'), 'abc')
  assert.equal(sidFromOpenPacket('97:0{"sid":"abc"'), 'abc')
  assert.equal(sidFromOpenPacket('0{"sid":"ab'), undefined)
})

test('sidFromOpenPacket: finds sid after other members', () => {
  assert.equal(sidFromOpenPacket('0{"upgrades":["websocket"], "sid" : "abc"}'), 'abc')
})

test('sidFromOpenPacket: undefined for anything but an open packet', () => {
  for (const body of ['', 'ok', '40', '2', '4{"sid":"abc"}', '6', '96:4{"sid":"abc"}', 'x0{"sid":"abc"}',
    '0{"nested":{"sid":"abc"}}', '___eio[0]("0{\\"sid\\":\\"abc\\"}");', '{"code":1,"message":"Session ID unknown"}']) {
    assert.equal(sidFromOpenPacket(body), undefined, body)
  }
})
