/**
 * Issue 9, the upgrade handshake path: what a relayed refusal and a 101 carry
 * to the client byte for byte, a handshake request Node refuses to build, and
 * failover when a server accepts the connection and never answers.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { filterRawResponseHeaders, filterResponseHeaders } from '../src/headers.js'
import { createGateway } from '../src/index.js'
import {
  answeringUpstream, eventually, gatewayTo, nextMessage, openWs, parseAnswer, rawClient,
  switchingProtocols, upgradeRequest, watchForCrashes, wsEchoUpstream,
} from './helpers/servers.js'

watchForCrashes()

const GOOD = upgradeRequest('/chat')

/** Sends GOOD from a raw client and resolves once the gateway has closed the client's socket. */
async function upgradeUntilClosed (t: TestContext, port: number) {
  const client = await rawClient(t, port)
  client.socket.write(GOOD)
  await client.closed
  return client
}

/** The lines of a raw head, up to the blank line, as latin1 text (one character per byte). */
function headLines (bytes: Buffer): string[] {
  const text = bytes.toString('latin1')
  const end = text.indexOf('\r\n\r\n')
  return (end === -1 ? text : text.slice(0, end)).split('\r\n')
}

test('upgrade-hardening: a relayed refusal drops the headers its upstream listed in Connection (issue 9)', async (t) => {
  const upstream = await answeringUpstream(t, () => Buffer.from('HTTP/1.1 403 Forbidden\r\n' +
    'Connection: close, X-Secret\r\nX-Secret: 1\r\nTrailer: X-Sum\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nno'))
  const { gateway, port, events } = await gatewayTo(t, upstream.url)
  const client = await upgradeUntilClosed(t, port)
  const { status, headers, body } = parseAnswer(client.text())
  assert.equal(status, 403, client.text())
  assert.equal(headers['x-secret'], undefined, 'a header the upstream listed in Connection was relayed')
  assert.equal(headers.trailer, undefined, 'Trailer was relayed')
  assert.equal(headers['x-kept'], 'yes')
  assert.deepEqual(headLines(client.received()).filter((l) => /^connection:/i.test(l)), ['Connection: close'])
  assert.equal(body, 'no')
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPGRADE_REFUSED'])
  assert.ok(await eventually(() => upstream.sockets.size === 0), 'the upstream socket stayed open')
  assert.equal(gateway.status().tunnels.open, 0)
})

test('upgrade-hardening: the response filter drops the same names from a raw header list as from an object (issue 9)', () => {
  const raw = ['Set-Cookie', 'a=1', 'CONNECTION', 'close, X-Secret', 'X-Secret', '1', 'Keep-Alive', 'timeout=5',
    'TE', 'trailers', 'Trailer', 'X-Sum', 'set-cookie', 'b=2', 'Content-Length', '0']
  assert.deepEqual(filterRawResponseHeaders(raw), ['Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'Content-Length', '0'])
  const object: Record<string, string | string[]> = {}
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    const prior = object[name]
    object[name] = prior === undefined ? raw[i + 1]! : [prior, raw[i + 1]!].flat()
  }
  assert.deepEqual({ ...filterResponseHeaders(object) }, { 'set-cookie': ['a=1', 'b=2'], 'content-length': '0' })
})

// 0xE9 is "é" in Latin-1; re-encoded as UTF-8 it would become the two bytes C3 A9.
const E_ACUTE = Buffer.from([0xe9])

test('upgrade-hardening: a 101 reaches the client with its header bytes >= 0x80 unchanged (issue 9)', async (t) => {
  const upstream = await answeringUpstream(t, (request) => {
    const head = switchingProtocols(request)
    return Buffer.concat([Buffer.from(head.slice(0, -2), 'latin1'), Buffer.from('X-Name: caf'), E_ACUTE, Buffer.from('\r\n\r\n')])
  })
  const { gateway, port } = await gatewayTo(t, upstream.url)
  const client = await rawClient(t, port)
  client.socket.write(GOOD)
  assert.ok(await eventually(() => client.text().includes('\r\n\r\n')), client.text())
  assert.match(headLines(client.received())[0] ?? '', /^HTTP\/1\.1 101 /)
  assert.ok(client.received().includes(Buffer.concat([Buffer.from('\r\nX-Name: caf'), E_ACUTE, Buffer.from('\r\n')])),
    `the value's bytes changed: ${client.received().toString('hex')}`)
  assert.ok(await eventually(() => gateway.status().tunnels.open === 1), 'no tunnel opened')
})

test('upgrade-hardening: a relayed refusal keeps the bytes >= 0x80 of its status line and headers (issue 9)', async (t) => {
  const upstream = await answeringUpstream(t, () => Buffer.concat([
    Buffer.from('HTTP/1.1 403 Refus'), E_ACUTE, Buffer.from('\r\nX-Reason: r'), E_ACUTE, Buffer.from('serv'), E_ACUTE,
    Buffer.from('\r\nContent-Length: 0\r\n\r\n'),
  ]))
  const { port } = await gatewayTo(t, upstream.url)
  const client = await upgradeUntilClosed(t, port)
  const head = client.received()
  assert.ok(head.includes(Buffer.concat([Buffer.from('HTTP/1.1 403 Refus'), E_ACUTE, Buffer.from('\r\n')])), head.toString('hex'))
  assert.ok(head.includes(Buffer.concat([Buffer.from('\r\nX-Reason: r'), E_ACUTE, Buffer.from('serv'), E_ACUTE, Buffer.from('\r\n')])), head.toString('hex'))
  assert.equal(head.includes(Buffer.from([0xc3, 0xa9])), false, 'a byte was re-encoded as UTF-8')
})

// Node refuses to build some requests (`http.request()` throws). No client can send such bytes (Node's parser
// refuses them first), but an `authorize` hook edits req.headers and req.url, and what it leaves is sent.
const UNSENDABLE: Array<[string, (req: IncomingMessage) => void, RegExp]> = [
  ['a header value with a character past Latin-1', (req) => { req.headers['x-user'] = 'caf\u20ac' }, /x-user/i],
  ['a path with a space', (req) => { req.url = '/chat room' }, /path/i],
]

for (const [what, edit, named] of UNSENDABLE) {
  test(`upgrade-hardening: an upgrade that authorize left with ${what} gets 400, and the upstream socket is closed (issue 9)`, async (t) => {
    const upstream = await answeringUpstream(t, (request) => Buffer.from(switchingProtocols(request), 'latin1'))
    const { gateway, port, events } = await gatewayTo(t, upstream.url, {
      timeouts: { handshake: 300 },
      authorize: (req) => { edit(req); return true },
    })
    const client = await upgradeUntilClosed(t, port)
    const { status, headers, body } = parseAnswer(client.text())
    assert.equal(status, 400, client.text())
    assert.equal(headers.connection, 'close')
    assert.match(body, /cannot be sent/)
    assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_BAD_REQUEST'])
    assert.match(events.errors[0]?.error.message ?? '', named)
    assert.ok(await eventually(() => upstream.sockets.size === 0), 'the upstream socket stayed open')
    assert.equal(upstream.requests(), 0)
    // The request's own fault: the server is not blamed and stays in the pool.
    assert.deepEqual(gateway.status().pools.default!.servers.map((s) => [s.failures, s.state]), [[0, 'up']])
  })
}

test('upgrade-hardening: headers.set refuses Expect in any case, naming the path and why (issue 9)', () => {
  for (const name of ['Expect', 'expect', 'eXpEcT']) {
    assert.throws(() => createGateway({ target: 'http://127.0.0.1:1', headers: { set: { [name]: '100-continue' } } }), {
      code: 'SOCKGATE_ERR_INVALID_OPTION',
      message: new RegExp(`^headers\\.set\\.${name} is not allowed: .*100 Continue`),
    })
  }
})

test('upgrade-hardening: a server that accepts and never answers the upgrade hands the client to the next server, with the default failoverTimeout (issue 9)', async (t) => {
  const hung = await answeringUpstream(t, () => undefined)
  const healthy = await wsEchoUpstream(t)
  const { gateway, url, events } = await gatewayTo(t, [hung.url, healthy.url], { timeouts: { connect: 200, handshake: 300 } })
  const ws = await openWs(t, url + '/chat')
  const reply = nextMessage(ws)
  ws.send('through the healthy one')
  assert.equal((await reply).toString(), 'through the healthy one')
  const servers = gateway.status().pools.default!.servers
  assert.deepEqual(servers.map((s) => [s.url, s.failures]), [[hung.url, 1], [healthy.url, 0]])
  assert.equal(hung.requests(), 1, 'the hung server never got the upgrade')
  assert.ok(await eventually(() => hung.sockets.size === 0), 'the socket to the hung server stayed open')
  assert.deepEqual(events.errors, [], 'a failover that succeeds raises no proxy:error')
})

test('upgrade-hardening: a client that leaves during a hung handshake ends the failover, and no other server is dialled (issue 9)', async (t) => {
  const first = await answeringUpstream(t, () => undefined)
  const second = await answeringUpstream(t, () => undefined)
  const { gateway, port, events } = await gatewayTo(t, [first.url, second.url], { timeouts: { connect: 200, handshake: 60_000 } })
  const client = await rawClient(t, port)
  client.socket.write(GOOD)
  assert.ok(await eventually(() => first.requests() + second.requests() === 1), 'the upgrade never reached a server')
  client.socket.destroy()
  assert.ok(await eventually(() => events.errors.length === 1), 'the gateway never reported the end of the attempt')
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_CLIENT_ABORTED'])
  assert.equal(first.connections() + second.connections(), 1, 'another server was dialled for a client that had left')
  assert.ok(await eventually(() => first.sockets.size + second.sockets.size === 0), 'an upstream socket stayed open')
  assert.deepEqual(gateway.status().pools.default!.servers.map((s) => s.failures), [0, 0])
})

test('upgrade-hardening: a refusal whose body stops short closes the client socket when the upstream closes (issue 9)', async (t) => {
  const upstream = await answeringUpstream(t, (_request, socket) => {
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 100\r\n\r\nonly ten b')
    return undefined
  })
  const { gateway, port } = await gatewayTo(t, upstream.url, { timeouts: { request: 60_000 } })
  const client = await rawClient(t, port)
  client.socket.write(GOOD)
  assert.ok(await eventually(() => client.isClosed()), `the client socket stayed open after ${JSON.stringify(client.text())}`)
  assert.equal(parseAnswer(client.text()).status, 403)
  assert.ok(await eventually(() => upstream.sockets.size === 0), 'the upstream socket stayed open')
  assert.equal(gateway.status().tunnels.open, 0)
})

test('upgrade-hardening: a refusal whose body stalls is cut after timeouts.request, on both sides (issue 9)', async (t) => {
  const upstream = await answeringUpstream(t, () => Buffer.from('HTTP/1.1 403 Forbidden\r\nContent-Length: 100\r\n\r\nonly ten b'))
  const { port } = await gatewayTo(t, upstream.url, { timeouts: { request: 200 } })
  const client = await rawClient(t, port)
  client.socket.write(GOOD)
  assert.ok(await eventually(() => client.isClosed()), 'the client socket stayed open')
  assert.match(client.text(), /^HTTP\/1\.1 403 [^]*only ten b$/)
  assert.ok(await eventually(() => upstream.sockets.size === 0), 'the upstream socket stayed open')
})
