import { spawn } from 'node:child_process'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import Fastify, { type FastifyInstance } from 'fastify'
import request from 'supertest'
import { WebSocket } from 'ws'
import { createGateway, type TunnelCloseEvent } from '../../src/index.js'
import sockgatePlugin, { type SockgateFastifyOptions } from '../../adapters/fastify.js'
import { eventually } from '../helpers/servers.js'
import { ASSETS_DIR, buildFastify } from './apps.js'
import { runScenarios } from './scenarios.js'
import { recordingUpstream, wsRoundTrip } from './upstreams.js'

runScenarios('fastify', buildFastify)

/** A listening Fastify app with the plugin; `setup` adds the app's own routes and hooks first. */
async function serve (t: TestContext, options: SockgateFastifyOptions, setup: (app: FastifyInstance) => void = () => {}, app = Fastify()): Promise<{ app: FastifyInstance, url: string }> {
  setup(app)
  await app.register(sockgatePlugin, options)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => app.close())
  return { app, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` }
}

async function openWs (t: TestContext, url: string): Promise<WebSocket> {
  const ws = new WebSocket(url.replace(/^http/, 'ws'))
  t.after(() => ws.terminate())
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  return ws
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
  assert.match(out, /closed gateway=true/)
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
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(chunk.toString()); cb() } })
  const { url } = await serve(t, {
    target: up.url,
    assets: { '/assets': { root: ASSETS_DIR, logLevel: 'silent' }, '/logged': ASSETS_DIR },
  }, () => {}, Fastify({ logger: { level: 'info', stream } }))
  assert.equal((await request(url).get('/assets/app.js')).status, 200)
  assert.equal((await request(url).get('/logged/app.js')).status, 200)
  assert.equal((await request(url).get('/proxied')).text, 'up /proxied')
  // 'incoming request' lines carry the URL, 'request completed' lines the status; reqId joins them.
  const entries = lines.map((l) => JSON.parse(l) as { reqId?: string, req?: { url?: string }, res?: { statusCode?: number } })
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
