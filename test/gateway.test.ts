import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import supertest from 'supertest'
import { createGateway, InvalidOptionError, SockgateError, type GatewayOptions } from '../src/index.js'
import {
  answeringUpstream, eventually, gatewayServer, gatewayTo, listen, nextMessage, openWs, parseAnswer, rawExchange,
  recordEvents, refusedUrl, switchingProtocols, upgradeRequest, watchForCrashes, wsClosedWithin, wsEchoUpstream,
} from './helpers/servers.js'

// The gateway's own contract, through the public API only: createGateway(), pool(), attach(), handleRequest(),
// handleUpgrade(), close(), closed, status(), metrics() and the events.
watchForCrashes()

/** A ws echo upstream (plain requests get 426) that counts the plain requests and the handshakes it sees. */
async function countingUpstream (t: TestContext) {
  const upstream = await wsEchoUpstream(t)
  let requests = 0
  let handshakes = 0
  upstream.server.on('request', () => { requests++ })
  upstream.wss.on('connection', () => { handshakes++ })
  return { ...upstream, requests: () => requests, handshakes: () => handshakes }
}

/** Sends `text` over `ws` and resolves with the echo, as text. */
async function echo (ws: Awaited<ReturnType<typeof openWs>>, text: string): Promise<string> {
  const reply = nextMessage(ws)
  ws.send(text)
  return String(await reply)
}

// createGateway() and pool()

test('gateway: createGateway() throws an invalid option to its caller as SOCKGATE_ERR_INVALID_OPTION naming the option', () => {
  const options = { upstreams: { app: { servers: ['http://127.0.0.1:9'] } }, routes: [{ path: '/', upstream: 'ap' }] }
  assert.throws(() => createGateway(options as GatewayOptions), (err: unknown) => {
    assert.ok(err instanceof InvalidOptionError, String(err))
    assert.ok(err instanceof SockgateError)
    assert.equal(err.code, 'SOCKGATE_ERR_INVALID_OPTION')
    assert.match(err.message, /^routes\[0\]\.upstream /)
    return true
  })
})

test('gateway: pool(name) is the live pool of that name: marking its server down turns requests away with 503', async (t) => {
  const upstream = await countingUpstream(t)
  const { gateway, url } = await gatewayServer(t, { upstreams: { app: { servers: [upstream.url] } } })
  const pool = gateway.pool('app')
  assert.equal(pool.name, 'app')
  assert.deepEqual(pool.servers.map((s) => s.url), [upstream.url])
  assert.equal(pool.markDown(upstream.url), true)
  assert.equal(gateway.status().pools.app!.servers[0]!.state, 'down')
  assert.equal((await supertest(url).get('/')).status, 503)
  assert.equal(upstream.requests(), 0)
})

test('gateway: pool() of a name no pool has throws, naming it', (t) => {
  const gateway = createGateway({ upstreams: { app: { servers: ['http://127.0.0.1:9'] } } })
  t.after(() => gateway.close())
  assert.throws(() => gateway.pool('api'), /"api"/)
})

// attach()

test('dispatch: attach() twice on one server still makes one upstream handshake per upgrade', async (t) => {
  const upstream = await countingUpstream(t)
  const app = await gatewayTo(t, upstream.url)
  const { gateway, events } = app
  assert.equal(gateway.attach(app.server), gateway)
  const before = app.server.listenerCount('upgrade')
  gateway.attach(app.server)
  assert.equal(app.server.listenerCount('upgrade'), before)
  assert.equal(await echo(await openWs(t, app.url + '/twice'), 'upstream'), 'upstream')
  assert.equal(upstream.handshakes(), 1)
  assert.equal(events.opened.length, 1)
  assert.deepEqual(events.errors, [])
})

// handleRequest() and handleUpgrade()

test('forward: handleRequest calls next() when no route matches', async (t) => {
  const up = await countingUpstream(t)
  const gateway = createGateway({ target: up.url, routes: [{ host: 'chat.example.com', upstream: 'default' }] })
  t.after(() => gateway.close())
  let nextCalls = 0
  const server = http.createServer((req, res) => {
    gateway.handleRequest(req, res, () => {
      nextCalls++
      res.end('from the app')
    })
  })
  const port = await listen(t, server)

  const res = await supertest(`http://127.0.0.1:${port}`).get('/').set('Host', 'www.example.com')

  assert.equal(res.text, 'from the app')
  assert.equal(nextCalls, 1)
  assert.equal(up.requests(), 0)
})

test('forward: handleRequest without next() answers 404 when no route matches', async (t) => {
  const up = await countingUpstream(t)
  const { url } = await gatewayServer(t, { target: up.url, routes: [{ path: '/api', upstream: 'default' }] })

  const res = await supertest(url).get('/elsewhere')

  assert.equal(res.status, 404)
  assert.match(res.text, /No route matches/)
  assert.equal(up.requests(), 0)
})

test('gateway: handleUpgrade() takes a routed upgrade (true) and leaves one no route takes to the caller (false)', async (t) => {
  const upstream = await countingUpstream(t)
  const gateway = createGateway({ target: upstream.url, routes: [{ path: '/chat', upstream: 'default' }] })
  t.after(() => gateway.close())
  const taken: boolean[] = []
  const server = http.createServer()
  server.on('upgrade', (req, socket, head) => {
    const took = gateway.handleUpgrade(req, socket, head)
    taken.push(took)
    if (!took) socket.end('HTTP/1.1 418 I\'m a teapot\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
  })
  const port = await listen(t, server)

  const answer = await rawExchange(port, upgradeRequest('/elsewhere'))
  assert.equal(parseAnswer(answer.text).status, 418, answer.text)
  assert.deepEqual(taken, [false])
  assert.equal(upstream.handshakes(), 0)

  const ws = await openWs(t, `http://127.0.0.1:${port}/chat`)
  assert.equal(await echo(ws, 'routed'), 'routed')
  assert.deepEqual(taken, [false, true])
  assert.equal(upstream.handshakes(), 1)
})

// close() and closed

test('gateway: closed is false until close() is called and true from that call on', async (t) => {
  const upstream = await countingUpstream(t)
  const { gateway } = await gatewayServer(t, { target: upstream.url })
  assert.equal(gateway.closed, false)
  const closing = gateway.close()
  assert.equal(gateway.closed, true)
  await closing
  assert.equal(gateway.closed, true)
})

test('forward: after close() a request is answered 503 with Retry-After', async (t) => {
  const up = await countingUpstream(t)
  const { url, gateway } = await gatewayServer(t, { target: up.url })
  const events = recordEvents(gateway)
  await gateway.close()

  const res = await supertest(url).get('/')

  assert.equal(res.status, 503)
  assert.match(String(res.headers['retry-after']), /^\d+$/)
  assert.equal(up.requests(), 0)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_CLOSED'])
})

test('upgrade: a closing gateway answers a new upgrade 503 with Retry-After', async (t) => {
  const upstream = await answeringUpstream(t, switchingProtocols)
  const { gateway, server, port, events } = await gatewayTo(t, upstream.url)
  await gateway.close()
  assert.equal(server.listening, true)
  const answer = await rawExchange(port, upgradeRequest('/chat'))
  const { status, headers } = parseAnswer(answer.text)
  assert.equal(status, 503, answer.text)
  assert.equal(headers['retry-after'], '5')
  assert.equal(answer.closed, true, 'the client socket was left open')
  assert.ok(await eventually(() => gateway.status().tunnels.open === 0), 'a tunnel stayed open')
  assert.equal(upstream.connections(), 0)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_CLOSED'])
})

test('tunnel: close() without drain ends open tunnels with reason gateway-closed', async (t) => {
  const upstream = await wsEchoUpstream(t)
  const { url, gateway, events } = await gatewayTo(t, upstream.url)
  const ws = await openWs(t, url + '/closing')
  await gateway.close()
  assert.equal(gateway.status().tunnels.open, 0)
  assert.ok(await wsClosedWithin(ws), 'the client never saw its socket close')
  assert.deepEqual(events.closed.map((e) => e.reason), ['gateway-closed'])
})

// status() and metrics()

test('gateway: status() is plain data: every pool by name, a snapshot of each of its servers, and the open tunnels', async (t) => {
  const upstream = await countingUpstream(t)
  const { gateway, url } = await gatewayServer(t, {
    upstreams: { app: { servers: [upstream.url] }, spare: { servers: [{ url: 'http://127.0.0.1:9', name: 'spare-1', weight: 3 }] } },
    routes: [{ path: '/', upstream: 'app' }],
  })
  const fresh = { name: null, state: 'up', reason: null, weight: 1, backup: false, activeTunnels: 0, activeRequests: 0, requests: 0, upgrades: 0, failures: 0, bytesIn: 0, bytesOut: 0, lastCheck: null }
  assert.deepEqual(gateway.status(), {
    pools: {
      app: { servers: [{ ...fresh, url: upstream.url }] },
      spare: { servers: [{ ...fresh, url: 'http://127.0.0.1:9', name: 'spare-1', weight: 3 }] },
    },
    tunnels: { open: 0 },
  })
  const ws = await openWs(t, url + '/live')
  const live = gateway.status()
  assert.deepEqual(JSON.parse(JSON.stringify(live)), live, 'status() is not plain data')
  assert.equal(live.tunnels.open, 1)
  assert.deepEqual({ activeTunnels: live.pools.app!.servers[0]!.activeTunnels, upgrades: live.pools.app!.servers[0]!.upgrades }, { activeTunnels: 1, upgrades: 1 })
  ws.close()
})

test('gateway: metrics() is Prometheus text with a sample for the open tunnels and for each server of each pool', async (t) => {
  const upstream = await countingUpstream(t)
  const { gateway, url } = await gatewayServer(t, { upstreams: { app: { servers: [upstream.url] } } })
  const ws = await openWs(t, url + '/live')
  const lines = gateway.metrics().split('\n')
  assert.equal(lines.at(-1), '', 'the text does not end with a line feed')
  assert.ok(lines.includes('# TYPE sockgate_tunnels_open gauge'))
  assert.ok(lines.includes('sockgate_tunnels_open 1'), 'the open tunnel is not counted')
  assert.ok(lines.includes(`sockgate_upstream_up{pool="app",server="${upstream.url}"} 1`), 'the server has no up sample')
  ws.close()
})

// Events

test('gateway: tunnel:close names the same pool, server, path and client as its tunnel:open', async (t) => {
  const upstream = await wsEchoUpstream(t)
  const { url, events } = await gatewayTo(t, upstream.url)
  const ws = await openWs(t, url + '/room/7?user=ada')
  ws.close()
  assert.ok(await eventually(() => events.closed.length === 1), 'no tunnel:close')
  const { pool, server, name, path, clientAddress } = events.closed[0]!
  assert.deepEqual({ pool, server, name, path, clientAddress }, events.opened[0])
  assert.deepEqual(events.opened[0], { pool: 'default', server: upstream.url, name: null, path: '/room/7?user=ada', clientAddress: '127.0.0.1' })
})

test('gateway: proxy:error names the kind, pool, server, method and path of a request that failed', async (t) => {
  const dead = await refusedUrl()
  const { url, events } = await gatewayTo(t, dead)
  assert.equal((await supertest(url).post('/orders?id=3').send('x')).status, 502)
  assert.equal(events.errors.length, 1)
  const { error, ...where } = events.errors[0]!
  assert.equal(error.code, 'SOCKGATE_ERR_UPSTREAM_CONNECT')
  assert.deepEqual(where, { kind: 'http', pool: 'default', server: dead, name: null, method: 'POST', path: '/orders?id=3', clientAddress: '127.0.0.1' })
})

test('gateway: proxy:error of a failed upgrade says kind upgrade, with its pool, server and path', async (t) => {
  const dead = await refusedUrl()
  const { port, events } = await gatewayTo(t, dead)
  const answer = await rawExchange(port, upgradeRequest('/chat?room=1'))
  assert.equal(parseAnswer(answer.text).status, 502, answer.text)
  assert.equal(events.errors.length, 1)
  const { error, ...where } = events.errors[0]!
  assert.equal(error.code, 'SOCKGATE_ERR_UPSTREAM_CONNECT')
  assert.deepEqual(where, { kind: 'upgrade', pool: 'default', server: dead, name: null, method: 'GET', path: '/chat?room=1', clientAddress: '127.0.0.1' })
})
