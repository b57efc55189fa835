import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createGateway, type SockgateError } from '../src/index.js'
import { upstreamHandshake } from '../src/upgrade.js'
import { UpstreamServer } from '../src/upstream/server.js'
import { normalizeServer } from '../src/options.js'
import {
  eventually, gatewayServer, nextMessage, openWs, parseAnswer, rawExchange, rawUpstream, recordEvents, switchingProtocols,
  upgradeRequest, watchForCrashes, wsEchoUpstream,
} from './helpers/servers.js'

watchForCrashes()

/** A raw upstream that answers each upgrade request with `answer(request)`, as latin1 bytes. */
async function answering (t: Parameters<typeof rawUpstream>[0], answer: (request: string) => string) {
  return await rawUpstream(t, (socket) => {
    let request = ''
    socket.on('data', (chunk: Buffer) => {
      request += chunk.toString('latin1')
      if (request.includes('\r\n\r\n')) socket.end(Buffer.from(answer(request), 'latin1'))
    })
  })
}

test('upgrade hardening: a relayed refusal drops the headers its Connection names and every hop-by-hop one, and keeps the rest', async (t) => {
  const upstream = await answering(t, () => 'HTTP/1.1 403 Forbidden\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n' +
    'TE: trailers\r\nTrailer: X-Sum\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nno')
  const { port } = await gatewayServer(t, { target: upstream.url })
  const { text } = await rawExchange(port, upgradeRequest('/ws'))
  const answer = parseAnswer(text)
  assert.equal(answer.status, 403)
  assert.equal(answer.headers['x-kept'], 'yes')
  for (const name of ['x-secret', 'keep-alive', 'te', 'trailer']) assert.equal(answer.headers[name], undefined, `${name} was relayed: ${text}`)
  assert.equal(text.match(/^connection:/gim)?.length, 1)
  assert.equal(answer.headers.connection, 'close')
  assert.equal(answer.body, 'no')
})

test('upgrade hardening: header bytes >= 0x80 in a 101 and in a relayed refusal reach the client as the same bytes', async (t) => {
  const e9 = 'caf\u00e9' // one byte 0xE9 when written as latin1
  const switching = await answering(t, (request) => switchingProtocols(request).replace('\r\n\r\n', `\r\nX-Name: ${e9}\r\n\r\n`))
  const refusing = await answering(t, () => `HTTP/1.1 401 Unauthorized\r\nX-Name: ${e9}\r\nContent-Length: 0\r\n\r\n`)
  for (const upstream of [switching, refusing]) {
    const { port } = await gatewayServer(t, { target: upstream.url })
    const { text } = await rawExchange(port, upgradeRequest('/ws'), 1_000)
    const bytes = Buffer.from(text, 'latin1')
    assert.ok(bytes.includes(Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0d, 0x0a])), `the byte 0xE9 did not come through as itself: ${JSON.stringify(text)}`)
    assert.ok(!bytes.includes(Buffer.from([0xc3, 0xa9])), 'the byte 0xE9 was re-encoded as UTF-8')
  }
})

test('upgrade hardening: a head http.request() refuses to build rejects the handshake cleanly: no timer fires later, no socket stays open', async (t) => {
  // The rewriter never lets such a value through; this goes to the handshake directly, so that the
  // construction is safe whatever calls it.
  const upstream = await rawUpstream(t, () => {})
  const server = new UpstreamServer(normalizeServer(upstream.url, 'servers[0]'))
  const handshakeMs = 100
  const failure = await upstreamHandshake(server, {
    path: '/ws',
    headers: ['Host', 'localhost', 'X-Bad', 'a\u007fb'],
    token: 'websocket',
    clientKey: 'dGhlIHNhbXBsZSBub25jZQ==',
    connectMs: 1_000,
    handshakeMs,
    tls: null,
    cancel: { cancelled: false, onCancel: undefined },
  }).then(() => undefined, (err: unknown) => err as SockgateError)
  assert.equal(failure?.code, 'SOCKGATE_ERR_BAD_REQUEST')
  assert.match(failure.message, /cannot be sent upstream/)
  assert.ok(await eventually(() => upstream.sockets.size === 0, 2_000), 'the upstream socket was left open')
  // Past the handshake timeout: a timer left armed would throw now (watchForCrashes fails the file).
  await new Promise((resolve) => setTimeout(resolve, handshakeMs * 3))
})

test('upgrade hardening: headers.set may not set Expect, which would make every upstream answer 100 Continue first', () => {
  for (const name of ['Expect', 'expect', 'EXPECT']) {
    assert.throws(() => createGateway({ target: 'http://127.0.0.1:1', headers: { set: { [name]: '100-continue' } } }),
      (err: SockgateError) => err.code === 'SOCKGATE_ERR_INVALID_OPTION' && err.message.startsWith(`headers.set.${name} is not allowed`))
  }
})

test('upgrade hardening: an upstream that accepts and never answers an upgrade is passed over with the default failoverTimeout', async (t) => {
  const hung = await rawUpstream(t, () => {})
  const healthy = await wsEchoUpstream(t)
  // The default failoverTimeout is timeouts.connect + timeouts.handshake: room for one hung handshake and one more try.
  const { url, gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [hung.url, healthy.url], balance: 'round-robin' } },
    routes: [{ path: '/', upstream: 'app' }],
    timeouts: { connect: 200, handshake: 300 },
  })
  const events = recordEvents(gateway)
  // Round-robin sends one of the first two upgrades to the hung server first, whichever it starts with.
  for (const message of ['one', 'two']) {
    const ws = await openWs(t, url)
    ws.send(message)
    assert.equal((await nextMessage(ws)).toString(), message)
  }
  const [hungStatus] = gateway.status().pools.app!.servers
  assert.equal(hungStatus!.failures, 1)
  assert.deepEqual(events.errors.map((e) => e.error.code), [])
})
