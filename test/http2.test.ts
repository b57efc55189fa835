import { test } from 'node:test'
import assert from 'node:assert/strict'
import http2, { type IncomingHttpHeaders, type SecureServerOptions } from 'node:http2'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import { WebSocket } from 'ws'
import { createGateway, type GatewayOptions } from '../src/index.js'
import { bodyOf, CA, extendedConnect, frames, h2Session, KEY_CERT } from './helpers/http2.js'
import { recordEvents, eventually, httpUpstream, nextMessage, openWs, rawUpstream, wsEchoUpstream } from './helpers/servers.js'

const OFFERED: SecureServerOptions = { ...KEY_CERT, settings: { enableConnectProtocol: true } }

/** A gateway on an HTTP/2 server that offers WebSockets (and takes HTTP/1.1 too): its page requests go to handleRequest. */
async function h2Gateway (t: TestContext, options: GatewayOptions, server = http2.createSecureServer({ ...OFFERED, allowHTTP1: true })) {
  const gateway = createGateway(options)
  server.on('request', (req, res) => gateway.handleRequest(req, res))
  gateway.attachHttp2(server)
  t.after(() => gateway.close())
  const sessions = new Set<http2.ServerHttp2Session>()
  server.on('session', (s) => {
    sessions.add(s)
    s.on('close', () => sessions.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => {
    for (const s of sessions) s.destroy()
    server.close(() => resolve())
  }))
  const port = (server.address() as AddressInfo).port
  return { gateway, server, port, url: `https://127.0.0.1:${port}`, sessions }
}

test('http2: an extended CONNECT stream exchanges WebSocket frames with a ws upstream and reports tunnel:open as http2', async (t) => {
  const upstream = await wsEchoUpstream(t)
  const { gateway, url } = await h2Gateway(t, { target: upstream.url })
  const events = recordEvents(gateway)
  const { stream, headers } = await extendedConnect(await h2Session(t, url), '/chat?room=1')
  assert.equal(headers[':status'], 200)
  assert.equal(headers['sec-websocket-accept'], undefined, 'RFC 8441 §5 has no accept on HTTP/2')
  const ws = frames(stream)
  await ws.send('hello over h2')
  assert.ok(await eventually(() => ws.messages.length === 1), 'no echo came back')
  assert.deepEqual(ws.messages, ['hello over h2'])
  assert.deepEqual(events.opened, [{ pool: 'default', server: upstream.url, name: null, path: '/chat?room=1', clientAddress: '127.0.0.1', http2: true }])
  assert.equal(gateway.status().tunnels.open, 1)
  stream.close()
  assert.ok(await eventually(() => events.closed.length === 1), 'no tunnel:close')
  assert.ok(events.closed[0]!.bytesIn > 'hello over h2'.length, `bytesIn ${events.closed[0]!.bytesIn}`)
  assert.ok(events.closed[0]!.bytesOut > 'hello over h2'.length, `bytesOut ${events.closed[0]!.bytesOut}`)
  assert.equal(gateway.status().tunnels.open, 0)
})

test('http2: the upstream gets an HTTP/1.1 upgrade with a key of the gateway\'s, Host from :authority and no pseudo-headers', async (t) => {
  let seen: string | undefined
  const upstream = await wsEchoUpstream(t, { handleProtocols: (protocols) => protocols.has('chat.v2') ? 'chat.v2' : false })
  upstream.server.prependListener('upgrade', (req) => { seen = req.rawHeaders.join('\n') })
  const { url } = await h2Gateway(t, { target: upstream.url })
  const { headers } = await extendedConnect(await h2Session(t, url), '/ws', { 'sec-websocket-protocol': 'chat.v1, chat.v2' })
  assert.equal(headers[':status'], 200)
  assert.equal(headers['sec-websocket-protocol'], 'chat.v2', 'the negotiated subprotocol is not relayed')
  const lines = seen!.split('\n')
  assert.equal(lines[0], 'Host')
  assert.equal(lines[1], 'localhost')
  assert.ok(!lines.some((l) => l.startsWith(':')), `pseudo-headers were forwarded: ${seen}`)
  const key = lines[lines.findIndex((l) => l.toLowerCase() === 'sec-websocket-key') + 1]!
  assert.equal(Buffer.from(key, 'base64').length, 16)
  assert.equal(lines.filter((l) => l.toLowerCase() === 'host').length, 1)
})

test('http2: an upstream that refuses the upgrade has its status, fields and body relayed on the stream', async (t) => {
  const upstream = await httpUpstream(t, () => {})
  upstream.server.on('upgrade', (_req, socket) => {
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nX-Why: banned\r\nConnection: close\r\nContent-Length: 7\r\n\r\nno, no\n')
  })
  const { gateway, url } = await h2Gateway(t, { target: upstream.url })
  const events = recordEvents(gateway)
  const { stream, headers } = await extendedConnect(await h2Session(t, url), '/ws')
  assert.equal(headers[':status'], 403)
  assert.equal(headers['x-why'], 'banned')
  assert.equal(headers.connection, undefined)
  assert.equal(await bodyOf(stream), 'no, no\n')
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPGRADE_REFUSED'])
  assert.deepEqual(events.opened, [])
})

test('http2: a 101 with a wrong Sec-WebSocket-Accept is answered 502 on the stream', async (t) => {
  const upstream = await rawUpstream(t, (socket) => {
    socket.once('data', () => socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: bm9wZQ==\r\n\r\n'))
  })
  const { gateway, url } = await h2Gateway(t, { target: upstream.url })
  const events = recordEvents(gateway)
  const { stream, headers } = await extendedConnect(await h2Session(t, url), '/ws')
  assert.equal(headers[':status'], 502)
  assert.match(await bodyOf(stream), /^502 Bad Gateway/)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_PROTOCOL'])
})

test('http2: refusals before any upstream is dialled come as :status (426 version, 400 protocol, 403 authorize, 503 down)', async (t) => {
  const upstream = await wsEchoUpstream(t)
  let connections = 0
  upstream.server.on('connection', () => connections++)
  const { gateway, url } = await h2Gateway(t, { target: upstream.url, authorize: (req) => req.url !== '/private' })
  const session = await h2Session(t, url)
  const version = await extendedConnect(session, '/ws', { 'sec-websocket-version': '8' })
  assert.equal(version.headers[':status'], 426)
  assert.equal(version.headers['sec-websocket-version'], '13')
  const other = await extendedConnect(session, '/ws', { ':protocol': 'h2c' })
  assert.equal(other.headers[':status'], 400)
  assert.match(await bodyOf(other.stream), /may not be tunnelled/)
  assert.equal((await extendedConnect(session, '/private')).headers[':status'], 403)
  gateway.pool('default').markDown(upstream.url)
  const down = await extendedConnect(session, '/ws')
  assert.equal(down.headers[':status'], 503)
  assert.equal(down.headers['retry-after'], '5')
  assert.equal(connections, 0)
})

test('http2: an unrouted WebSocket stream gets 404, and a server without the setting is refused with SOCKGATE_ERR_CONNECT_PROTOCOL', async (t) => {
  const upstream = await wsEchoUpstream(t)
  const gateway = createGateway({ upstreams: { a: { servers: [upstream.url] } }, routes: [{ path: '/ws', upstream: 'a' }] })
  t.after(() => gateway.close())
  const server = http2.createSecureServer(OFFERED)
  gateway.attachHttp2(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const session = await h2Session(t, `https://127.0.0.1:${(server.address() as AddressInfo).port}`)
  assert.equal((await extendedConnect(session, '/elsewhere')).headers[':status'], 404)
  session.destroy()

  assert.throws(() => createGateway({ target: upstream.url }).attachHttp2(http2.createSecureServer(KEY_CERT)),
    (err: Error & { code?: string }) => err.code === 'SOCKGATE_ERR_CONNECT_PROTOCOL' && err.message.includes('settings: { enableConnectProtocol: true }'))
})

test('http2: a client that resets its stream (RST_STREAM) ends the tunnel and the upstream socket, and the session goes on', async (t) => {
  const upstream = await wsEchoUpstream(t)
  const { gateway, url } = await h2Gateway(t, { target: upstream.url })
  const events = recordEvents(gateway)
  const session = await h2Session(t, url)
  const { stream } = await extendedConnect(session, '/ws')
  assert.ok(await eventually(() => upstream.sockets.size === 1))
  stream.close(http2.constants.NGHTTP2_CANCEL)
  assert.ok(await eventually(() => events.closed.length === 1), 'no tunnel:close after RST_STREAM')
  assert.ok(await eventually(() => upstream.sockets.size === 0), 'the upstream socket was left open')
  const again = await extendedConnect(session, '/ws')
  assert.equal(again.headers[':status'], 200)
  again.stream.close()
})

test('http2: a session that goes away (GOAWAY, then the connection) ends all its tunnels; gateway.close() ends the rest', async (t) => {
  const upstream = await wsEchoUpstream(t)
  const { gateway, url } = await h2Gateway(t, { target: upstream.url })
  const events = recordEvents(gateway)
  const first = await h2Session(t, url)
  await extendedConnect(first, '/a')
  await extendedConnect(first, '/b')
  const second = await h2Session(t, url)
  await extendedConnect(second, '/c')
  assert.equal(gateway.status().tunnels.open, 3)
  first.goaway()
  first.destroy()
  assert.ok(await eventually(() => events.closed.length === 2), 'the session\'s tunnels did not close')
  await gateway.close()
  assert.equal(events.closed.length, 3)
  assert.equal(events.closed[2]!.reason, 'gateway-closed')
  assert.ok(await eventually(() => upstream.sockets.size === 0), 'upstream sockets were left open')
  const late = await extendedConnect(await h2Session(t, url), '/d')
  assert.equal(late.headers[':status'], 503)
})

test('http2: requests and long-polls over HTTP/2 go through handleRequest with Host from :authority and no connection fields back', async (t) => {
  const upstream = await httpUpstream(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive', 'keep-alive': 'timeout=5', 'x-host': req.headers.host ?? '' })
    res.end(JSON.stringify({ url: req.url, method: req.method, pseudo: Object.keys(req.headers).filter((k) => k.startsWith(':')) }))
  })
  const { url } = await h2Gateway(t, { target: upstream.url })
  const session = await h2Session(t, url)
  const stream = session.request({ ':path': '/socket.io/?EIO=4&transport=polling', ':authority': 'app.example:8443' })
  const headers = await new Promise<IncomingHttpHeaders>((resolve) => stream.once('response', resolve))
  assert.equal(headers[':status'], 200)
  assert.equal(headers['x-host'], 'app.example:8443')
  assert.equal(headers['keep-alive'], undefined)
  assert.deepEqual(JSON.parse(await bodyOf(stream)), { url: '/socket.io/?EIO=4&transport=polling', method: 'GET', pseudo: [] })
})

test('http2: a failed HTTP/2 request gets a well-formed 502 without Connection', async (t) => {
  const upstream = await rawUpstream(t, (socket) => socket.destroy())
  const { url } = await h2Gateway(t, { target: upstream.url })
  const session = await h2Session(t, url)
  const stream = session.request({ ':path': '/x', ':method': 'POST' })
  stream.end('body')
  const headers = await new Promise<IncomingHttpHeaders>((resolve) => stream.once('response', resolve))
  assert.equal(headers[':status'], 502)
  assert.equal(headers.connection, undefined)
  assert.match(await bodyOf(stream), /^502 Bad Gateway/)
})

test('http2: with allowHTTP1, HTTP/1.1 clients and their upgrades keep working through attach()', async (t) => {
  const upstream = await wsEchoUpstream(t)
  const { gateway, server, url } = await h2Gateway(t, { target: upstream.url })
  gateway.attach(server)
  const ws = await openWs(t, url.replace('https', 'wss'), undefined, { ca: CA })
  ws.send('over 1.1')
  assert.equal(String(await nextMessage(ws)), 'over 1.1')
  assert.ok(ws instanceof WebSocket)
})

test('http2: a plain CONNECT on a server also attach()ed is refused 400 on its stream, as over HTTP/1.1', async (t) => {
  const upstream = await wsEchoUpstream(t)
  const { gateway, server, url } = await h2Gateway(t, { target: upstream.url })
  gateway.attach(server)
  const events = recordEvents(gateway)
  const stream = (await h2Session(t, url)).request({ ':method': 'CONNECT', ':authority': 'example.com:443' })
  const headers = await new Promise<IncomingHttpHeaders>((resolve) => stream.once('response', resolve))
  assert.equal(headers[':status'], 400)
  assert.equal(headers.connection, undefined)
  assert.match(await bodyOf(stream), /CONNECT is not proxied/)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_BAD_REQUEST'])
})

test('http2: a sticky pool\'s cookie comes with the :status 200 of a WebSocket over HTTP/2', async (t) => {
  const a = await wsEchoUpstream(t)
  const b = await wsEchoUpstream(t)
  const { url } = await h2Gateway(t, { target: [a.url, b.url], sticky: { cookie: 'sg_node' } })
  const { stream, headers } = await extendedConnect(await h2Session(t, url), '/ws')
  assert.equal(headers[':status'], 200)
  assert.match(String(headers['set-cookie']), /^sg_node=/)
  stream.close()
})

test('http2: the status page answers over HTTP/2', async (t) => {
  const upstream = await wsEchoUpstream(t)
  const { url } = await h2Gateway(t, { target: upstream.url, status: true })
  const stream = (await h2Session(t, url)).request({ ':path': '/sockgate/status?format=json' })
  const headers = await new Promise<IncomingHttpHeaders>((resolve) => stream.once('response', resolve))
  assert.equal(headers[':status'], 200)
  assert.equal(JSON.parse(await bodyOf(stream)).tunnels.open, 0)
})

test('http2: an unrouted WebSocket stream goes to the app\'s own handlers untouched when it has some', async (t) => {
  const upstream = await wsEchoUpstream(t)
  const { server, url } = await h2Gateway(t, { upstreams: { a: { servers: [upstream.url] } }, routes: [{ path: '/ws', upstream: 'a' }] })
  // node:http2's compat layer hands a CONNECT to 'connect' listeners.
  server.on('connect', (req, res) => {
    res.writeHead(200, { 'x-app': 'own', 'x-host': String(req.headers.host), 'x-key': String(req.headers['sec-websocket-key']) })
    res.end()
  })
  const { headers } = await extendedConnect(await h2Session(t, url), '/app/ws')
  assert.deepEqual([headers[':status'], headers['x-app'], headers['x-host'], headers['x-key']], [200, 'own', 'undefined', 'undefined'])
})

test('http2: origins holds for WebSockets over HTTP/2: a page of another site gets 403 before any upstream is dialled', async (t) => {
  const upstream = await wsEchoUpstream(t)
  let connections = 0
  upstream.server.on('connection', () => connections++)
  const { url } = await h2Gateway(t, { target: upstream.url, origins: ['https://app.example'] })
  const session = await h2Session(t, url)
  assert.equal((await extendedConnect(session, '/ws', { origin: 'https://evil.example' })).headers[':status'], 403)
  assert.equal(connections, 0)
  const allowed = await extendedConnect(session, '/ws', { origin: 'https://app.example' })
  assert.equal(allowed.headers[':status'], 200)
  allowed.stream.close()
})
