import { spawn } from 'node:child_process'
import http from 'node:http'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import Fastify, { type FastifyInstance } from 'fastify'
import { pino } from 'pino'
import request from 'supertest'
import { WebSocketServer } from 'ws'
import { createGateway, type TunnelCloseEvent } from '../../src/index.js'
import sockgatePlugin, { type SockgateFastifyOptions } from '../../adapters/fastify.js'
import { eventually, listen, nextMessage, openWs } from '../helpers/servers.js'
import { ASSETS_DIR, buildFastify } from './apps.js'
import { connect, runScenarios, socketIoNode, type EchoAck } from './scenarios.js'
import { recordingUpstream, wsRoundTrip } from './upstreams.js'

runScenarios('fastify', buildFastify)

/** Listen on a loopback port and close the app when the test ends. */
async function listenApp (t: TestContext, app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => app.close())
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

/** A listening Fastify app with the plugin; `setup` adds the app's own routes and hooks first. */
async function serve (t: TestContext, options: SockgateFastifyOptions, setup: (app: FastifyInstance) => void = () => {}, app: FastifyInstance = Fastify()): Promise<{ app: FastifyInstance, url: string }> {
  setup(app)
  await app.register(sockgatePlugin, options)
  return { app, url: await listenApp(t, app) }
}

/** What {@link headersUpstream} saw of a request or upgrade. */
interface Seen {
  url: string
  headers: Record<string, string>
  body?: string
}

/** An upstream that answers each request, and each message on a WebSocket, with the request's url, headers (and body) as JSON. */
async function headersUpstream (t: TestContext): Promise<string> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }))
    })
  })
  const wss = new WebSocketServer({ server })
  wss.on('connection', (ws, req) => ws.on('message', () => ws.send(JSON.stringify({ url: req.url, headers: req.headers }))))
  t.after(() => {
    for (const c of wss.clients) c.terminate()
    wss.close()
  })
  return `http://127.0.0.1:${await listen(t, server)}`
}

/** What the upstream saw of a WebSocket opened to `url` with `headers`. */
async function wsSeen (t: TestContext, url: string, headers: Record<string, string> = {}): Promise<Seen> {
  const ws = await openWs(t, url, undefined, { headers })
  ws.send('headers?')
  return JSON.parse(String(await nextMessage(ws))) as Seen
}

/** A Fastify app whose logger is a real pino writing to `stream`. */
function appLoggingTo (stream: Writable): FastifyInstance {
  // pino's Logger type and Fastify's default logger type differ only in generics.
  return Fastify({ loggerInstance: pino(stream) }) as unknown as FastifyInstance
}

/** A stream collecting the JSON lines of a pino logger. */
function logLines (): { stream: Writable, records: () => Array<Record<string, unknown>> } {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(chunk.toString()); cb() } })
  return { stream, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) }
}

test('fastify: app.sockgate is the gateway the plugin built', async (t) => {
  const up = await recordingUpstream(t)
  const { app, url } = await serve(t, { target: up.url })
  assert.equal(app.sockgate.status().pools.default?.servers[0]?.url, up.url)
  assert.equal((await request(url).get('/x')).text, 'up /x')
})

test('fastify: { gateway } reuses a gateway already built', async (t) => {
  const up = await recordingUpstream(t)
  const gateway = createGateway({ target: up.url })
  const { app, url } = await serve(t, { gateway })
  assert.equal(app.sockgate, gateway)
  assert.equal(await wsRoundTrip(t, `${url}/x`), 'up: hi')
})

test('fastify: gateway options next to { gateway } are refused, naming the option', async () => {
  const gateway = createGateway({ target: 'http://127.0.0.1:9' })
  const app = Fastify()
  await assert.rejects(async () => { await app.register(sockgatePlugin, { gateway, target: 'http://127.0.0.1:10' }) }, {
    code: 'SOCKGATE_ERR_INVALID_OPTION',
    message: /^target cannot be combined with gateway/,
  })
  await app.close()
  await gateway.close()
})

test('fastify: close() ends a tunnel still open after closeDrain, and closes the gateway', async (t) => {
  const up = await recordingUpstream(t)
  const app = Fastify()
  await app.register(sockgatePlugin, { target: up.url, closeDrain: 50 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const closed: TunnelCloseEvent[] = []
  app.sockgate.on('tunnel:close', (e) => closed.push(e))
  const ws = await openWs(t, `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/x`)
  const wsClosed = new Promise((resolve) => ws.once('close', resolve))
  await app.close()
  await wsClosed
  assert.equal(app.sockgate.closed, true)
  assert.deepEqual(closed.map((e) => e.reason), ['drained'])
})

test('fastify: close() lets a tunnel that ends within closeDrain end by itself', async (t) => {
  const up = await recordingUpstream(t)
  const app = Fastify()
  await app.register(sockgatePlugin, { target: up.url })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const closed: TunnelCloseEvent[] = []
  app.sockgate.on('tunnel:close', (e) => closed.push(e))
  const ws = await openWs(t, `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/x`)
  const closing = app.close()
  assert.ok(await eventually(() => app.sockgate.closed), 'the gateway started closing')
  ws.terminate()
  await closing
  assert.deepEqual(closed.map((e) => e.reason), ['client-closed'])
})

test('fastify: after close() the process has nothing left open and exits by itself', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../fixtures/fastify-close.ts', import.meta.url))], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  // A guard, not a timing claim: a child that does not exit on its own has a handle left open.
  const guard = setTimeout(() => child.kill('SIGKILL'), 60_000)
  t.after(() => { clearTimeout(guard); child.kill('SIGKILL') })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr.on('data', (c: Buffer) => { out += c.toString() })
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])))
  assert.equal(signal, null, `the child was killed: it did not exit by itself. Output:\n${out}`)
  assert.equal(code, 0, out)
  assert.match(out, /closed gateways=true,true/)
})

test("fastify: an app's wildcard route does not shadow a longer gateway prefix", async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await serve(t, { target: up.url, routes: [{ path: '/socket.io/', upstream: 'default' }] }, (app) => {
    app.get('/*', async () => 'spa page')
  })
  assert.equal((await request(url).get('/socket.io/?EIO=4')).text, 'up /socket.io/?EIO=4')
  assert.equal((await request(url).get('/some/page')).text, 'spa page')
})

test("fastify: a gateway route on / leaves the app's own routes and assets to the app", async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await serve(t, { target: up.url, assets: { '/assets': ASSETS_DIR } }, (app) => {
    app.get('/users/:id', async (req) => `user ${(req.params as { id: string }).id}`)
    app.get('/health', async () => 'ok')
  })
  assert.equal((await request(url).get('/users/7')).text, 'user 7')
  assert.equal((await request(url).get('/health')).text, 'ok')
  assert.match((await request(url).get('/assets/app.js')).text, /sockgate asset/)
  assert.equal((await request(url).get('/assets/missing.js')).status, 404)
  assert.equal((await request(url).get('/anything/else')).text, 'up /anything/else')
  assert.deepEqual(up.http, ['/anything/else'])
})

test('fastify: an onRequest hook the app adds before the plugin guards proxied requests too', async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await serve(t, { target: up.url }, (app) => {
    app.addHook('onRequest', async (req, reply) => {
      if (req.headers.authorization !== 'Bearer ok') await reply.code(401).send('no')
    })
  })
  assert.equal((await request(url).get('/x')).status, 401)
  assert.equal((await request(url).get('/x').set('Authorization', 'Bearer ok')).text, 'up /x')
  assert.deepEqual(up.http, ['/x'])
})

test("fastify: assets with logLevel 'silent' stay out of the request log, which records the rest with their status", async (t) => {
  const up = await recordingUpstream(t)
  const { stream, records } = logLines()
  const { url } = await serve(t, {
    target: up.url,
    assets: { '/assets': { root: ASSETS_DIR, logLevel: 'silent' }, '/logged': ASSETS_DIR },
  }, () => {}, Fastify({ logger: { level: 'info', stream } }))
  assert.equal((await request(url).get('/assets/app.js')).status, 200)
  assert.equal((await request(url).get('/logged/app.js')).status, 200)
  assert.equal((await request(url).get('/proxied')).text, 'up /proxied')
  // 'incoming request' lines carry the URL, 'request completed' lines the status; reqId joins them.
  const entries = records() as Array<{ reqId?: string, req?: { url?: string }, res?: { statusCode?: number } }>
  const logged = entries.filter((e) => e.req?.url !== undefined).map((e) => ({
    url: e.req?.url,
    status: entries.find((c) => c.reqId === e.reqId && c.res !== undefined)?.res?.statusCode,
  }))
  assert.deepEqual(logged, [{ url: '/logged/app.js', status: 200 }, { url: '/proxied', status: 200 }])
})

test('fastify: a closeDrain that is not a whole number of ms is refused', async () => {
  const app = Fastify()
  await assert.rejects(async () => { await app.register(sockgatePlugin, { target: 'http://127.0.0.1:9', closeDrain: -1 }) }, {
    code: 'SOCKGATE_ERR_INVALID_OPTION',
    message: /^closeDrain must be an integer >= 0/,
  })
  await app.close()
})

test('fastify: prefix scopes the plugin: paths outside it are the app’s, paths under it reach the upstream without the prefix', async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await serve(t, { target: up.url, prefix: '/api' })
  assert.equal((await request(url).get('/other')).status, 404)
  assert.equal((await request(url).get('/apix')).status, 404)
  assert.equal((await request(url).get('/api/x?y=1')).text, 'up /x?y=1')
  assert.equal((await request(url).get('/api')).text, 'up /')
  assert.deepEqual(up.http, ['/x?y=1', '/'])
})

test('fastify: stripPrefix: false forwards the path with its prefix', async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await serve(t, { target: up.url, prefix: '/api', stripPrefix: false })
  assert.equal((await request(url).get('/api/x')).text, 'up /api/x')
})

test('fastify: an upgrade under the prefix is tunnelled without the prefix, and one outside it is not', async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await serve(t, { target: up.url, prefix: '/api' })
  assert.equal(await wsRoundTrip(t, `${url}/api/x`), 'up: hi')
  assert.equal(await wsRoundTrip(t, `${url}/other`), 'HTTP 404')
  assert.deepEqual(up.ws, ['/x'])
})

test('fastify: stripPrefix: false keeps the prefix on upgrades too', async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await serve(t, { target: up.url, prefix: '/api', stripPrefix: false })
  assert.equal(await wsRoundTrip(t, `${url}/api/x`), 'up: hi')
  assert.deepEqual(up.ws, ['/api/x'])
})

for (const transport of ['websocket', 'polling']) {
  test(`fastify: a Socket.IO client on /chat/socket.io/ reaches an upstream on its default path (${transport})`, async (t) => {
    const node = await socketIoNode(t, 'chat-node')
    const { url } = await serve(t, { target: node.url, prefix: '/chat' })
    const socket = await connect(t, url, { path: '/chat/socket.io/', transports: [transport] })
    assert.equal((await socket.emitWithAck('echo', 'x') as EchoAck).node, 'chat-node')
    assert.equal(socket.io.engine.transport.name, transport)
  })
}

test('fastify: two registrations with their own prefixes each reach their own upstream, for HTTP and upgrades', async (t) => {
  const chat = await recordingUpstream(t, 'chat')
  const game = await recordingUpstream(t, 'game')
  const app = Fastify()
  await app.register(sockgatePlugin, { target: chat.url, prefix: '/chat' })
  await app.register(sockgatePlugin, { target: game.url, prefix: '/game' })
  const url = await listenApp(t, app)
  assert.equal((await request(url).get('/chat/x')).text, 'chat /x')
  assert.equal((await request(url).get('/game/x')).text, 'game /x')
  assert.equal(await wsRoundTrip(t, `${url}/chat/x`), 'chat: hi')
  assert.equal(await wsRoundTrip(t, `${url}/game/x`), 'game: hi')
  assert.deepEqual([chat.http, chat.ws, game.http, game.ws], [['/x'], ['/x'], ['/x'], ['/x']])
})

test("fastify: app.sockgate is its context's first registration's gateway, and a child context's own there", async (t) => {
  const [first, second, inChild] = [1, 2, 3].map(() => createGateway({ target: 'http://127.0.0.1:9' }))
  const app = Fastify()
  t.after(() => app.close())
  await app.register(sockgatePlugin, { gateway: first!, prefix: '/a' })
  await app.register(sockgatePlugin, { gateway: second!, prefix: '/b' })
  const contexts: Record<string, FastifyInstance> = {}
  await app.register(async (child) => {
    await child.register(sockgatePlugin, { gateway: inChild!, prefix: '/c' })
    contexts.registering = child
  })
  await app.register(async (child) => { contexts.plain = child })
  await app.ready()
  assert.equal(app.sockgate, first)
  assert.equal(contexts.registering?.sockgate, inChild)
  assert.equal(contexts.plain?.sockgate, first)
})

test("fastify: a registration in a child context is scoped under the context's prefix and its own", async (t) => {
  const up = await recordingUpstream(t)
  const app = Fastify()
  await app.register(async (v1) => { await v1.register(sockgatePlugin, { target: up.url, prefix: '/game' }) }, { prefix: '/v1' })
  const url = await listenApp(t, app)
  assert.equal((await request(url).get('/v1/game/x')).text, 'up /x')
  assert.equal(await wsRoundTrip(t, `${url}/v1/game/x`), 'up: hi')
  assert.equal((await request(url).get('/game/x')).status, 404)
  assert.equal((await request(url).get('/v1/other')).status, 404)
  assert.equal(await wsRoundTrip(t, `${url}/game/x`), 'HTTP 404')
  assert.deepEqual([up.http, up.ws], [['/x'], ['/x']])
})

test("fastify: a child context's onRequest hook guards its registration's requests and upgrades, and nothing outside it", async (t) => {
  const up = await recordingUpstream(t)
  const app = Fastify()
  app.get('/open', async () => 'open')
  await app.register(async (v1) => {
    v1.addHook('onRequest', async (req, reply) => {
      if (req.headers.authorization !== 'Bearer ok') await reply.code(401).send('no')
    })
    await v1.register(sockgatePlugin, { target: up.url, prefix: '/game' })
  }, { prefix: '/v1' })
  const url = await listenApp(t, app)
  const auth = { authorization: 'Bearer ok' }
  assert.equal((await request(url).get('/v1/game/x')).status, 401)
  await assert.rejects(openWs(t, `${url}/v1/game/x`), /unexpected response 401/)
  assert.equal((await request(url).get('/v1/game/x').set(auth)).text, 'up /x')
  const ws = await openWs(t, `${url}/v1/game/x`, undefined, { headers: auth })
  ws.send('hi')
  assert.equal(String(await nextMessage(ws)), 'up: hi')
  assert.equal((await request(url).get('/open')).text, 'open')
  assert.deepEqual([up.http, up.ws], [['/x'], ['/x']])
})

test("fastify: the app's own routes under the prefix answer themselves", async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await serve(t, { target: up.url, prefix: '/api' }, (app) => {
    app.get('/api/health', async () => 'ok')
    app.get('/api/users/:id', async (req) => `user ${(req.params as { id: string }).id}`)
  })
  assert.equal((await request(url).get('/api/health')).text, 'ok')
  assert.equal((await request(url).get('/api/users/7')).text, 'user 7')
  assert.equal((await request(url).get('/api/users')).text, 'up /users')
  assert.deepEqual(up.http, ['/users'])
})

test("fastify: a request under the prefix that the gateway's routes leave gets the app's not-found answer", async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await serve(t, {
    upstreams: { sio: { servers: [up.url] } },
    routes: [{ path: '/socket.io/', upstream: 'sio' }],
    prefix: '/chat',
  }, (app) => { app.setNotFoundHandler((_req, reply) => { reply.code(404).send('app: not found') }) })
  const res = await request(url).get('/chat/other')
  assert.deepEqual([res.status, res.text], [404, 'app: not found'])
  assert.equal((await request(url).get('/chat/socket.io/?EIO=4')).text, 'up /socket.io/?EIO=4')
  assert.equal(await wsRoundTrip(t, `${url}/chat/other`), 'HTTP 404')
  assert.deepEqual([up.http, up.ws], [['/socket.io/?EIO=4'], []])
})

test('fastify: close() ends the tunnels of every registration and closes every gateway', async (t) => {
  const chat = await recordingUpstream(t, 'chat')
  const game = await recordingUpstream(t, 'game')
  const gateways = [createGateway({ target: chat.url }), createGateway({ target: game.url })]
  const app = Fastify()
  await app.register(sockgatePlugin, { gateway: gateways[0], prefix: '/chat', closeDrain: 50 })
  await app.register(sockgatePlugin, { gateway: gateways[1], prefix: '/game', closeDrain: 50 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const closed: string[] = []
  for (const g of gateways) g.on('tunnel:close', (e) => closed.push(`${e.pool}:${e.reason}`))
  const sockets = [await openWs(t, `${url}/chat/x`), await openWs(t, `${url}/game/x`)]
  const ended = Promise.all(sockets.map((ws) => new Promise((resolve) => ws.once('close', resolve))))
  await app.close()
  await ended
  assert.deepEqual(gateways.map((g) => g.closed), [true, true])
  assert.deepEqual(closed, ['default:drained', 'default:drained'])
})

test('fastify: a WebSocket tunnel through the plugin writes its record to app.log', async (t) => {
  const up = await recordingUpstream(t)
  const { stream, records } = logLines()
  const { url } = await serve(t, { target: up.url, prefix: '/chat' }, () => {}, appLoggingTo(stream))
  const ws = await openWs(t, `${url}/chat/x`)
  ws.send('hi')
  await nextMessage(ws)
  ws.terminate()
  assert.ok(await eventually(() => records().some((r) => r.msg === 'tunnel closed')), 'a tunnel record was written')
  const record = records().find((r) => r.msg === 'tunnel closed')!
  assert.deepEqual({ level: record.level, pool: record.pool, server: record.server, path: record.path, clientAddress: record.clientAddress, reason: record.reason },
    { level: 30, pool: 'default', server: up.url, path: '/x', clientAddress: '127.0.0.1', reason: 'client-closed' })
  assert.equal(typeof record.durationMs, 'number')
  assert.ok((record.bytesIn as number) > 0 && (record.bytesOut as number) > 0, `bytes both ways: ${JSON.stringify(record)}`)
})

test("fastify: a logger given in the options takes the gateway's records instead of app.log", async (t) => {
  const up = await recordingUpstream(t)
  const own = logLines()
  const app = logLines()
  const { url } = await serve(t, { target: up.url, logger: pino(own.stream) }, () => {}, appLoggingTo(app.stream))
  assert.equal(await wsRoundTrip(t, `${url}/x`), 'up: hi')
  assert.ok(await eventually(() => own.records().some((r) => r.msg === 'tunnel closed')), 'the given logger got the tunnel record')
  assert.equal(app.records().filter((r) => r.msg === 'tunnel closed').length, 0)
})

/** An auth-like hook: deletes x-secret, changes x-role, and adds x-user through Fastify's headers setter. */
function editHeaders (app: FastifyInstance): void {
  app.addHook('onRequest', async (request) => {
    delete request.headers['x-secret']
    request.raw.headers['x-role'] = 'admin'
    request.headers = { 'x-user': 'ann' }
  })
}

const SENT = { 'x-secret': 's3cret', 'x-role': 'guest', 'x-kept': 'as sent' }
const EDITED = { 'x-role': 'admin', 'x-kept': 'as sent', 'x-user': 'ann' }

function editedOf (seen: Seen): Record<string, string | undefined> {
  return { 'x-role': seen.headers['x-role'], 'x-kept': seen.headers['x-kept'], 'x-user': seen.headers['x-user'], 'x-secret': seen.headers['x-secret'] }
}

test('fastify: headers an onRequest hook added, changed and deleted reach the upstream as edited', async (t) => {
  const upstream = await headersUpstream(t)
  const { url } = await serve(t, { target: upstream }, editHeaders)
  const seen = (await request(url).get('/x').set(SENT)).body as Seen
  assert.deepEqual(editedOf(seen), { ...EDITED, 'x-secret': undefined })
})

test('fastify: headers an onRequest hook added, changed and deleted reach the upstream of an upgrade as edited', async (t) => {
  const upstream = await headersUpstream(t)
  const { url } = await serve(t, { target: upstream, prefix: '/rt' }, editHeaders)
  const seen = await wsSeen(t, `${url}/rt/x`, SENT)
  assert.equal(seen.url, '/x')
  assert.deepEqual(editedOf(seen), { ...EDITED, 'x-secret': undefined })
})

test('fastify: an onRequest hook that answers 401 keeps an upgrade from the upstream', async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await serve(t, { target: up.url }, (app) => {
    app.addHook('onRequest', async (req, reply) => {
      if (req.headers.authorization !== 'Bearer ok') await reply.code(401).send('no')
    })
  })
  assert.equal(await wsRoundTrip(t, `${url}/x`), 'HTTP 401')
  assert.deepEqual(up.ws, [])
})

test("fastify: a JSON body under a prefix reaches the upstream byte for byte, never read by the app's content-type parser", async (t) => {
  const upstream = await headersUpstream(t)
  let parsed = 0
  const { url } = await serve(t, { target: upstream, prefix: '/api' }, (app) => {
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
      parsed++
      done(null, JSON.parse(body as string))
    })
  })
  const body = '{ "a":1,\n  "kept" : "as sent" }'
  const seen = (await request(url).post('/api/items').set('Content-Type', 'application/json').send(body)).body as Seen
  assert.deepEqual([seen.url, seen.body, seen.headers['content-length']], ['/items', body, String(Buffer.byteLength(body))])
  assert.equal(parsed, 0)
})

test('fastify: a prefix that is not a plain path prefix is refused, naming the option', async () => {
  for (const prefix of ['/rooms/:id', 'api']) {
    const app = Fastify()
    await assert.rejects(async () => { await app.register(sockgatePlugin, { target: 'http://127.0.0.1:9', prefix }) }, {
      code: 'SOCKGATE_ERR_INVALID_OPTION',
      message: /^prefix must be a plain path prefix/,
    })
    await app.close()
  }
})

test('fastify: a stripPrefix that is not a boolean is refused', async () => {
  const app = Fastify()
  await assert.rejects(async () => { await app.register(sockgatePlugin, { target: 'http://127.0.0.1:9', stripPrefix: 'yes' as unknown as boolean }) }, {
    code: 'SOCKGATE_ERR_INVALID_OPTION',
    message: /^stripPrefix must be true or false/,
  })
  await app.close()
})
