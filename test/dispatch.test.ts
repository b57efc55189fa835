import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import type { Socket } from 'node:net'
import { WebSocket, WebSocketServer } from 'ws'
import { createGateway, type Gateway, type GatewayOptions } from '../src/index.js'
import {
  eventually, listen, nextMessage, parseAnswer, rawExchange, recordEvents, upgradeRequest, watchForCrashes,
  wsEchoUpstream,
} from './helpers/servers.js'

watchForCrashes()

/** A ws upstream that greets every client with `name` and counts its handshakes. */
async function namedUpstream (t: TestContext, name: string) {
  const upstream = await wsEchoUpstream(t)
  let handshakes = 0
  upstream.wss.on('connection', (ws) => {
    handshakes++
    ws.send(name)
  })
  return { ...upstream, handshakes: () => handshakes }
}

/**
 * A plain http server (no gateway yet) that closes with the test. Its sockets are destroyed first:
 * `t.after` hooks run in the order they were added, and `server.close()` waits for upgraded sockets.
 */
async function appServer (t: TestContext) {
  const server = http.createServer((_req, res) => { res.writeHead(200).end('app page') })
  const sockets = new Set<Socket>()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  t.after(() => { for (const socket of sockets) socket.destroy() })
  const port = await listen(t, server)
  return { server, port, url: `http://127.0.0.1:${port}` }
}

/** A gateway attached to `server`, closed when the test ends. */
function attachGateway (t: TestContext, server: http.Server, options: GatewayOptions): Gateway {
  const gateway = createGateway(options).attach(server)
  t.after(() => gateway.close())
  return gateway
}

/**
 * Opens a websocket to `url` and resolves with it and the first message it receives. The listener is set
 * before the handshake: a greeting sent at once can arrive in the same packet as the 101.
 */
async function greeted (t: TestContext, url: string): Promise<{ ws: WebSocket, first: string }> {
  const ws = new WebSocket(url.replace(/^http/, 'ws'))
  t.after(() => { ws.terminate() })
  const first = await new Promise<string>((resolve, reject) => {
    ws.once('message', (data) => resolve(String(data)))
    ws.once('error', reject)
    ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)))
  })
  return { ws, first }
}

async function greeting (t: TestContext, url: string): Promise<string> {
  return (await greeted(t, url)).first
}

/** The app's own echo server on `/own`, sharing the http server with sockgate. */
function ownWebSocketServer (t: TestContext, server: http.Server): WebSocketServer {
  const wss = new WebSocketServer({ server, path: '/own' })
  wss.on('connection', (ws) => {
    ws.send('app')
    ws.on('message', (data) => ws.send(`app echo ${String(data)}`))
  })
  t.after(() => {
    for (const ws of wss.clients) ws.terminate()
    wss.close()
  })
  return wss
}

test("dispatch: the app's own ws server on /own keeps working next to a sockgate route", async (t) => {
  const upstream = await namedUpstream(t, 'upstream')
  const app = await appServer(t)
  ownWebSocketServer(t, app.server)
  const gateway = attachGateway(t, app.server, { upstreams: { io: { servers: [upstream.url] } }, routes: [{ path: '/socket.io/', upstream: 'io' }] })
  const events = recordEvents(gateway)
  const { ws, first } = await greeted(t, app.url + '/own')
  assert.equal(first, 'app')
  const reply = nextMessage(ws)
  ws.send('hi')
  assert.equal(String(await reply), 'app echo hi')
  assert.equal(upstream.handshakes(), 0)
  assert.equal(events.opened.length, 0)
  assert.equal(events.errors.length, 0)
})

test("dispatch: an upgrade under a sockgate route reaches the upstream, never the app's ws server", async (t) => {
  const upstream = await namedUpstream(t, 'upstream')
  const app = await appServer(t)
  ownWebSocketServer(t, app.server)
  // Added after the ws server's listener, so it sees every upgrade the dispatcher passes on to the app.
  let appSaw = 0
  app.server.on('upgrade', () => { appSaw++ })
  const gateway = attachGateway(t, app.server, { upstreams: { io: { servers: [upstream.url] } }, routes: [{ path: '/socket.io/', upstream: 'io' }] })
  assert.equal(await greeting(t, app.url + '/socket.io/?EIO=4&transport=websocket'), 'upstream')
  assert.equal(upstream.handshakes(), 1)
  assert.equal(appSaw, 0)
  assert.equal(gateway.status().tunnels.open, 1)
})

test('dispatch: an unmatched upgrade with no other upgrade listener gets 404 and the socket closes', async (t) => {
  const upstream = await namedUpstream(t, 'upstream')
  const app = await appServer(t)
  const gateway = attachGateway(t, app.server, { upstreams: { io: { servers: [upstream.url] } }, routes: [{ path: '/socket.io/', upstream: 'io' }] })
  const answer = await rawExchange(app.port, upgradeRequest('/elsewhere'))
  const { status, headers } = parseAnswer(answer.text)
  assert.equal(status, 404, answer.text)
  assert.equal(headers.connection, 'close')
  assert.equal(answer.closed, true)
  assert.equal(upstream.handshakes(), 0)
  assert.equal(gateway.status().tunnels.open, 0)
})

test('dispatch: an absolute-form upgrade target gets 400, never reaches an upstream, and the socket closes', async (t) => {
  const upstream = await namedUpstream(t, 'upstream')
  const app = await appServer(t)
  attachGateway(t, app.server, { target: upstream.url })
  const answer = await rawExchange(app.port, upgradeRequest('http://evil.example/socket.io/'))
  const { status, body } = parseAnswer(answer.text)
  assert.equal(status, 400, answer.text)
  assert.match(body, /must be a path/)
  assert.equal(answer.closed, true)
  assert.equal(upstream.handshakes(), 0)
})

test('dispatch: two gateways attached to one server each get only the upgrades of their own routes', async (t) => {
  const a = await namedUpstream(t, 'A')
  const b = await namedUpstream(t, 'B')
  const app = await appServer(t)
  const gatewayA = attachGateway(t, app.server, { upstreams: { a: { servers: [a.url] } }, routes: [{ path: '/a', upstream: 'a' }] })
  const gatewayB = attachGateway(t, app.server, { upstreams: { b: { servers: [b.url] } }, routes: [{ path: '/b', upstream: 'b' }] })
  const eventsA = recordEvents(gatewayA)
  const eventsB = recordEvents(gatewayB)
  assert.equal(await greeting(t, app.url + '/b/chat'), 'B')
  assert.equal(await greeting(t, app.url + '/a/chat'), 'A')
  assert.deepEqual(eventsA.opened.map((e) => e.path), ['/a/chat'])
  assert.deepEqual(eventsB.opened.map((e) => e.path), ['/b/chat'])
  assert.deepEqual([a.handshakes(), b.handshakes()], [1, 1])
  assert.deepEqual([...eventsA.errors, ...eventsB.errors], [])
})

test('dispatch: after gateway.close() an upgrade on its route gets 503 and the socket closes', async (t) => {
  const upstream = await namedUpstream(t, 'upstream')
  const app = await appServer(t)
  const gateway = attachGateway(t, app.server, { upstreams: { io: { servers: [upstream.url] } }, routes: [{ path: '/socket.io/', upstream: 'io' }] })
  await gateway.close()
  const answer = await rawExchange(app.port, upgradeRequest('/socket.io/?EIO=4&transport=websocket'))
  const { status, headers } = parseAnswer(answer.text)
  assert.equal(status, 503, answer.text)
  assert.equal(headers['retry-after'], '5')
  assert.equal(answer.closed, true)
  assert.equal(upstream.handshakes(), 0)
  assert.ok(await eventually(() => gateway.status().tunnels.open === 0))
})

test("dispatch: after gateway.close() the app's own ws server still gets its upgrades", async (t) => {
  const upstream = await namedUpstream(t, 'upstream')
  const app = await appServer(t)
  ownWebSocketServer(t, app.server)
  const gateway = attachGateway(t, app.server, { upstreams: { io: { servers: [upstream.url] } }, routes: [{ path: '/socket.io/', upstream: 'io' }] })
  await gateway.close()
  assert.equal(await greeting(t, app.url + '/own'), 'app')
})

test('dispatch: an upgrade the app handles with a plain upgrade listener is left to it', async (t) => {
  const upstream = await namedUpstream(t, 'upstream')
  const app = await appServer(t)
  attachGateway(t, app.server, { upstreams: { io: { servers: [upstream.url] } }, routes: [{ path: '/socket.io/', upstream: 'io' }] })
  app.server.on('upgrade', (_req, socket) => {
    socket.end('HTTP/1.1 418 I\'m a teapot\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
  })
  const answer = await rawExchange(app.port, upgradeRequest('/tea'))
  assert.equal(parseAnswer(answer.text).status, 418, answer.text)
  assert.equal(upstream.handshakes(), 0)
})

test('dispatch: only the upgrade event is intercepted, and the server is left as it was once it closes', async (t) => {
  const upstream = await namedUpstream(t, 'upstream')
  const server = http.createServer((_req, res) => { res.writeHead(200).end('app page') })
  const before = { emit: Object.hasOwn(server, 'emit'), upgrade: server.listenerCount('upgrade'), connect: server.listenerCount('connect') }
  const gateway = attachGateway(t, server, { target: upstream.url })
  assert.equal(Object.hasOwn(server, 'emit'), true)
  let requests = 0
  server.on('request', () => { requests++ })
  const port = await listen(t, server)
  // Every other event reaches its listeners as before.
  assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 200)
  assert.equal(requests, 1)
  await new Promise<void>((resolve) => server.close(() => resolve()))
  assert.deepEqual({ emit: Object.hasOwn(server, 'emit'), upgrade: server.listenerCount('upgrade'), connect: server.listenerCount('connect') }, before)
  // Listening anew needs attach() anew, which then works as the first time.
  gateway.attach(server)
  const again = await listen(t, server)
  assert.equal(await greeting(t, `http://127.0.0.1:${again}/`), 'upstream')
})

test('dispatch: an emit wrapper the app added after attach() survives the server closing, and still sees its events', async (t) => {
  const upstream = await namedUpstream(t, 'upstream')
  const server = http.createServer((_req, res) => { res.writeHead(200).end('app page') })
  attachGateway(t, server, { target: upstream.url })
  const seen: string[] = []
  const wrapped = server.emit
  const mine = function (this: http.Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'request') seen.push('request')
    return wrapped.apply(this, [event, ...args] as Parameters<http.Server['emit']>)
  } as http.Server['emit']
  server.emit = mine
  const port = await listen(t, server)
  assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 200)
  await new Promise<void>((resolve) => server.close(() => resolve()))
  assert.equal(server.emit, mine)
  assert.equal(server.listenerCount('upgrade'), 0)
  const again = await listen(t, server)
  assert.equal((await fetch(`http://127.0.0.1:${again}/`)).status, 200)
  assert.deepEqual(seen, ['request', 'request'])
})
