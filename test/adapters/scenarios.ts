/**
 * One scenario table, run against every adapter (express.test.ts,
 * koa.test.ts, fastify.test.ts): static assets, the HTTP side of the proxy,
 * and real Socket.IO and ws clients through a listening app.
 */
import http from 'node:http'
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import request from 'supertest'
import { Server as SocketIoServer } from 'socket.io'
import { io as ioClient, type Socket as ClientSocket, type ManagerOptions, type SocketOptions } from 'socket.io-client'
import { WebSocket, WebSocketServer } from 'ws'
import type { GatewayOptions } from '../../src/index.js'
import { listen, rawExchange } from '../helpers/servers.js'
import type { AppUnderTest, BuildApp } from './apps.js'

/** A plain HTTP upstream that answers every request with what it received, as JSON, and remembers the paths. */
export async function echoUpstream (t: TestContext): Promise<{ url: string, seen: string[] }> {
  const seen: string[] = []
  const server = http.createServer((req, res) => {
    seen.push(req.url ?? '')
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() })
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'echo' }).end(body)
    })
  })
  const port = await listen(t, server)
  return { url: `http://127.0.0.1:${port}`, seen }
}

/** What the Socket.IO upstream acks to `echo`: the message, the transport it came over, and the forwarded proto. */
export interface EchoAck {
  msg: unknown
  node: string
  proto: string | undefined
}

/** A Socket.IO upstream named `node` that acks `echo`, on `server` (an https server with `scheme` 'https' for TLS). */
export async function socketIoNode (t: TestContext, node: string, server: http.Server = http.createServer(), scheme = 'http'): Promise<{ url: string, io: SocketIoServer }> {
  const io = new SocketIoServer(server)
  io.on('connection', (socket) => {
    socket.on('echo', (msg: unknown, ack: (reply: EchoAck) => void) => {
      const proto = socket.handshake.headers['x-forwarded-proto']
      ack({ msg, node, proto: Array.isArray(proto) ? proto.join(',') : proto })
    })
  })
  t.after(() => { io.close() })
  const port = await listen(t, server)
  return { url: `${scheme}://127.0.0.1:${port}`, io }
}

/** A Socket.IO client that has connected; closed when the test ends. */
export async function connect (t: TestContext, url: string, opts: Partial<ManagerOptions & SocketOptions>): Promise<ClientSocket> {
  const socket = ioClient(url, { reconnection: false, forceNew: true, timeout: 10_000, ...opts })
  t.after(() => { socket.close() })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('connect_error', reject)
  })
  return socket
}

/** The options every scenario app's gateway gets: Socket.IO on any host, everything on `proxied.test` to the echo upstream, the status page on. */
export function gatewayOptions (sioUrl: string, echoUrl: string): GatewayOptions {
  return {
    upstreams: { sio: { servers: [sioUrl] }, echo: { servers: [echoUrl] } },
    routes: [
      { path: '/socket.io/', upstream: 'sio' },
      { host: 'proxied.test', path: '/', upstream: 'echo' },
    ],
    status: true,
  }
}

/**
 * Open a raw WebSocket to the Socket.IO upstream through the app (with `Origin: origin` when given): `'open'`, or
 * `HTTP <status>` (and ` retry-after <s>` when the refusal says) when the handshake is refused. Left open until the test ends.
 */
export function engineIoSocket (t: TestContext, appUrl: string, origin?: string): Promise<{ outcome: string, ws: WebSocket }> {
  const ws = new WebSocket(`${appUrl.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`, origin === undefined ? {} : { origin })
  t.after(() => ws.terminate())
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ outcome: 'open', ws }))
    ws.once('unexpected-response', (_req, res) => {
      const retry = res.headers['retry-after']
      resolve({ outcome: `HTTP ${res.statusCode ?? 0}${retry === undefined ? '' : ` retry-after ${retry}`}`, ws })
      res.resume()
    })
    ws.once('error', reject)
  })
}

interface Env {
  app: AppUnderTest
  echo: { url: string, seen: string[] }
}

async function setup (t: TestContext, build: BuildApp, extra: Partial<GatewayOptions> = {}): Promise<Env> {
  const echo = await echoUpstream(t)
  const sio = await socketIoNode(t, 'sio')
  const app = await build(t, { gateway: { ...gatewayOptions(sio.url, echo.url), ...extra } })
  return { app, echo }
}

/** The whole table, each test named `<adapter>: <behaviour>`. */
export function runScenarios (adapter: string, build: BuildApp): void {
  const name = (behaviour: string): string => `${adapter}: ${behaviour}`

  test(name("assets with expires 'max' send nginx's Expires and Cache-Control"), async (t) => {
    const { app } = await setup(t, build)
    const res = await request(app.url).get('/assets/app.js')
    assert.equal(res.status, 200)
    assert.match(res.text, /sockgate asset/)
    assert.equal(res.headers.expires, 'Thu, 31 Dec 2037 23:55:55 GMT')
    assert.equal(res.headers['cache-control'], 'max-age=315360000')
  })

  test(name('assets with expires in seconds send that max-age and an Expires that far ahead'), async (t) => {
    const { app } = await setup(t, build)
    const before = Date.now()
    const res = await request(app.url).get('/cached/app.js')
    const after = Date.now()
    assert.equal(res.status, 200)
    assert.equal(res.headers['cache-control'], 'max-age=60')
    const expires = Date.parse(res.headers.expires ?? '')
    // HTTP dates have whole seconds: the value is the response time plus 60 s, rounded down.
    assert.ok(expires >= before + 60_000 - 1_000 && expires <= after + 60_000, `Expires ${res.headers.expires} is not 60 s after the request`)
  })

  test(name('assets with expires false send neither Expires nor Cache-Control'), async (t) => {
    const { app } = await setup(t, build)
    const res = await request(app.url).get('/plain/app.js')
    assert.equal(res.status, 200)
    assert.equal(res.headers.expires, undefined)
    assert.equal(res.headers['cache-control'], undefined)
  })

  test(name('CONNECT is answered 400, never dropped without a word and never proxied'), async (t) => {
    const { app, echo } = await setup(t, build)
    const { text } = await rawExchange(app.port, 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n')
    assert.match(text, /^HTTP\/1\.1 400 /)
    assert.deepEqual(echo.seen, [])
  })

  test(name('a request ending in / under assets serves index.html'), async (t) => {
    const { app } = await setup(t, build)
    const res = await request(app.url).get('/assets/')
    assert.equal(res.status, 200)
    assert.match(res.text, /asset index/)
  })

  test(name('a missing asset is 404 and never reaches the proxy'), async (t) => {
    const { app, echo } = await setup(t, build)
    const res = await request(app.url).get('/assets/missing.js').set('Host', 'proxied.test')
    assert.equal(res.status, 404)
    assert.deepEqual(echo.seen, [])
  })

  for (const [label, path] of [
    ['.. in an asset path', '/assets/../secret.txt'],
    ['a percent-encoded .. (%2e%2e) in an asset path', '/assets/%2e%2e/secret.txt'],
    ['an encoded slash (..%2f) in an asset path', '/assets/..%2fsecret.txt'],
    ['a fully encoded %2e%2e%2f in an asset path', '/assets/%2e%2e%2fsecret.txt'],
  ] as const) {
    test(name(`${label} gets 404, never the file outside the root`), async (t) => {
      const { app } = await setup(t, build)
      const res = await request(app.url).get(path)
      assert.equal(res.status, 404)
      assert.doesNotMatch(res.text, /OUTSIDE-ROOT/)
    })
  }

  test(name('the /assets mount does not serve the sibling folder /assets-private'), async (t) => {
    const { app } = await setup(t, build)
    const res = await request(app.url).get('/assets-private/secret.txt')
    assert.equal(res.status, 404)
    assert.doesNotMatch(res.text, /PRIVATE-SIBLING/)
  })

  test(name('an asset directory without index is 404, never a listing'), async (t) => {
    const { app } = await setup(t, build)
    for (const path of ['/assets/sub/', '/assets/sub']) {
      const res = await request(app.url).get(path)
      assert.equal(res.status, 404, path)
      assert.doesNotMatch(res.text, /file\.txt/, path)
    }
  })

  test(name('a dot-file under assets is 404'), async (t) => {
    const { app } = await setup(t, build)
    const res = await request(app.url).get('/assets/.hidden')
    assert.equal(res.status, 404)
    assert.doesNotMatch(res.text, /HIDDEN-DOTFILE/)
  })

  test(name('a Socket.IO polling handshake is routed to the upstream'), async (t) => {
    const { app } = await setup(t, build)
    const res = await request(app.url).get('/socket.io/?EIO=4&transport=polling')
    assert.equal(res.status, 200)
    assert.match(res.text, /^0\{"sid":"/)
  })

  test(name("the gateway's status page answers through the app"), async (t) => {
    const { app } = await setup(t, build)
    const res = await request(app.url).get('/sockgate/status?format=json')
    assert.equal(res.status, 200)
    assert.deepEqual(Object.keys(res.body.pools).sort(), ['echo', 'sio'])
  })

  test(name('a request the routes match is forwarded to its upstream'), async (t) => {
    const { app, echo } = await setup(t, build)
    const res = await request(app.url).get('/some/page?x=1').set('Host', 'proxied.test')
    assert.equal(res.status, 200)
    assert.equal(res.headers['x-upstream'], 'echo')
    assert.deepEqual(echo.seen, ['/some/page?x=1'])
  })

  test(name('a request body reaches the upstream untouched by the app'), async (t) => {
    const { app } = await setup(t, build)
    const body = '{"a": 1,   "kept": "as sent"}'
    const res = await request(app.url).post('/api/items').set('Host', 'proxied.test').set('Content-Type', 'application/json').send(body)
    assert.equal(res.status, 200)
    assert.equal(res.body.method, 'POST')
    assert.equal(res.body.body, body)
  })

  test(name('an app route ahead of the proxy answers itself'), async (t) => {
    const { app, echo } = await setup(t, build)
    const res = await request(app.url).get('/app/before').set('Host', 'proxied.test')
    assert.equal(res.status, 200)
    assert.equal(res.text, 'app before')
    assert.deepEqual(echo.seen, [])
  })

  test(name('a request no route matches goes on to the app'), async (t) => {
    const { app } = await setup(t, build)
    const after = await request(app.url).get('/app/after')
    assert.equal(after.status, 200)
    assert.equal(after.text, 'app after')
    const missing = await request(app.url).get('/nowhere')
    assert.equal(missing.status, 404)
    assert.equal(missing.text, 'app: not found')
  })

  test(name('an upgrade request lacking Connection: upgrade gets the explanatory 400'), async (t) => {
    const { app } = await setup(t, build)
    const res = await request(app.url).get('/socket.io/?EIO=4&transport=websocket')
      .set('Upgrade', 'websocket').set('Connection', 'keep-alive')
      .set('Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==').set('Sec-WebSocket-Version', '13')
    assert.equal(res.status, 400)
    assert.match(res.text, /Connection header must list "upgrade"/)
  })

  test(name('after gateway.close() a routed request gets 503'), async (t) => {
    const { app } = await setup(t, build)
    await app.gateway.close()
    const res = await request(app.url).get('/socket.io/?EIO=4&transport=polling')
    assert.equal(res.status, 503)
  })

  test(name('a websocket-only Socket.IO client round-trips through the app from the first connection'), async (t) => {
    const { app } = await setup(t, build)
    const socket = await connect(t, app.url, { transports: ['websocket'] })
    const ack = await socket.emitWithAck('echo', 'hello') as EchoAck
    assert.deepEqual(ack, { msg: 'hello', node: 'sio', proto: 'http' })
    assert.equal(socket.io.engine.transport.name, 'websocket')
  })

  test(name('a polling-only Socket.IO client round-trips through the app'), async (t) => {
    const { app } = await setup(t, build)
    const socket = await connect(t, app.url, { transports: ['polling'] })
    const ack = await socket.emitWithAck('echo', { n: 1 }) as EchoAck
    assert.deepEqual(ack, { msg: { n: 1 }, node: 'sio', proto: 'http' })
    assert.equal(socket.io.engine.transport.name, 'polling')
  })

  test(name("the app's own ws server on another path keeps working next to the proxy"), async (t) => {
    const { app } = await setup(t, build)
    const wss = new WebSocketServer({ server: app.server, path: '/ws' })
    wss.on('connection', (ws) => ws.on('message', (data) => ws.send(`own: ${String(data)}`)))
    t.after(() => {
      for (const c of wss.clients) c.terminate()
      wss.close()
    })
    const ws = new WebSocket(`${app.url.replace(/^http/, 'ws')}/ws`)
    t.after(() => ws.terminate())
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    const reply = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))))
    ws.send('ping')
    assert.equal(await reply, 'own: ping')
    const socket = await connect(t, app.url, { transports: ['websocket'] })
    assert.equal((await socket.emitWithAck('echo', 'x') as EchoAck).node, 'sio')
  })

  test(name('past limits.perClient.requestsPerSecond a proxied request gets 429 with Retry-After and never reaches the upstream'), async (t) => {
    const { app, echo } = await setup(t, build, { limits: { perClient: { requestsPerSecond: 1, burst: 0 } } })
    assert.equal((await request(app.url).get('/a').set('Host', 'proxied.test')).status, 200)
    const limited = await request(app.url).get('/b').set('Host', 'proxied.test')
    assert.deepEqual([limited.status, limited.headers['retry-after']], [429, '1'])
    assert.match(limited.text, /limits\.perClient\.requestsPerSecond/)
    assert.deepEqual(echo.seen, ['/a'])
    // The app's own routes and assets are not the gateway's to limit.
    assert.equal((await request(app.url).get('/assets/app.js')).status, 200)
    assert.equal((await request(app.url).get('/app/after')).status, 200)
  })

  test(name('past limits.perClient.connections an upgrade gets 429 with Retry-After until the open tunnel closes'), async (t) => {
    const { app } = await setup(t, build, { limits: { perClient: { connections: 1 } } })
    const first = await engineIoSocket(t, app.url)
    assert.equal(first.outcome, 'open')
    assert.equal((await engineIoSocket(t, app.url)).outcome, 'HTTP 429 retry-after 1')
    first.ws.close()
    await new Promise((resolve) => first.ws.once('close', resolve))
    let outcome = ''
    for (let i = 0; i < 100 && outcome !== 'open'; i++) {
      outcome = (await engineIoSocket(t, app.url)).outcome
      if (outcome !== 'open') await new Promise((resolve) => setTimeout(resolve, 20))
    }
    assert.equal(outcome, 'open')
  })

  test(name('origins: an upgrade from an unlisted origin gets 403, one from a listed origin its tunnel'), async (t) => {
    const { app } = await setup(t, build, { origins: ['https://app.example.com', 'https://*.example.com'] })
    assert.equal((await engineIoSocket(t, app.url, 'https://evil.example')).outcome, 'HTTP 403')
    assert.equal((await engineIoSocket(t, app.url, 'https://example.com')).outcome, 'HTTP 403')
    assert.equal((await engineIoSocket(t, app.url, 'https://app.example.com:443')).outcome, 'open')
    assert.equal((await engineIoSocket(t, app.url, 'https://eu.chat.example.com')).outcome, 'open')
    assert.equal((await engineIoSocket(t, app.url)).outcome, 'open', 'no Origin passes without requireOrigin')
  })

  test(name('origins with requireOrigin: an upgrade without Origin gets 403'), async (t) => {
    const { app } = await setup(t, build, { origins: ['https://app.example.com'], requireOrigin: true })
    assert.equal((await engineIoSocket(t, app.url)).outcome, 'HTTP 403')
    assert.equal((await engineIoSocket(t, app.url, 'https://app.example.com')).outcome, 'open')
  })

  test(name('an upgrade no route matches is not tunnelled'), async (t) => {
    const { app } = await setup(t, build)
    const ws = new WebSocket(`${app.url.replace(/^http/, 'ws')}/nowhere`)
    t.after(() => ws.terminate())
    const status = await new Promise<number>((resolve, reject) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
      ws.once('open', () => reject(new Error('an unrouted upgrade was tunnelled')))
      ws.once('error', reject)
    })
    assert.equal(status, 404)
  })
}
