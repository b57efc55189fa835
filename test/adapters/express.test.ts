import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import express from 'express'
import request from 'supertest'
import { createGateway } from '../../src/index.js'
import { assets, listen as listenApp, sockgate } from '../../adapters/express.js'
import { listen } from '../helpers/servers.js'
import { ASSETS_DIR, buildExpress } from './apps.js'
import { runScenarios } from './scenarios.js'
import { captureWarnings, recordingUpstream, wsRoundTrip } from './upstreams.js'

runScenarios('express', buildExpress)

/** Serve `app` on a new server, attached the documented way unless `attach` is false. */
async function serve (t: TestContext, app: express.Express, attach: Array<{ attach: (s: http.Server) => unknown }> = []): Promise<string> {
  const server = http.createServer(app)
  for (const proxy of attach) proxy.attach(server)
  const port = await listen(t, server)
  return `http://127.0.0.1:${port}`
}

test("express: app.use('/rt', proxy) proxies upgrades under /rt only", async (t) => {
  const up = await recordingUpstream(t)
  const app = express()
  const proxy = sockgate({ target: up.url })
  t.after(() => proxy.gateway.close())
  app.use('/rt', proxy)
  const url = await serve(t, app, [proxy])
  assert.equal(await wsRoundTrip(t, `${url}/rt/chat`), 'up: hi')
  assert.equal(await wsRoundTrip(t, `${url}/chat`), 'HTTP 404')
  assert.equal(await wsRoundTrip(t, `${url}/rtx/chat`), 'HTTP 404')
  assert.deepEqual(up.ws, ['/chat'])
})

test('express: a mounted proxy strips the mount path from upgrades exactly as Express does for HTTP', async (t) => {
  const up = await recordingUpstream(t)
  const app = express()
  const proxy = sockgate({ target: up.url })
  t.after(() => proxy.gateway.close())
  app.use('/rt', proxy)
  const url = await serve(t, app, [proxy])
  for (const path of ['/rt/socket.io/?EIO=4&x=1', '/rt', '/rt?q=1']) {
    await request(url).get(path)
    await wsRoundTrip(t, `${url}${path}`)
  }
  assert.deepEqual(up.ws, up.http)
  assert.deepEqual(up.http, ['/socket.io/?EIO=4&x=1', '/', '/?q=1'])
})

test('express: two mounts on one server each get only their own upgrades, longest prefix first', async (t) => {
  const a = await recordingUpstream(t, 'a')
  const b = await recordingUpstream(t, 'b')
  const app = express()
  const proxyA = sockgate({ target: a.url })
  const proxyB = sockgate({ target: b.url })
  t.after(() => Promise.all([proxyA.gateway.close(), proxyB.gateway.close()]))
  app.use('/rt', proxyA)
  app.use('/rt/admin', proxyB)
  const url = await serve(t, app, [proxyA, proxyB])
  assert.equal(await wsRoundTrip(t, `${url}/rt/admin/x`), 'b: hi')
  assert.equal(await wsRoundTrip(t, `${url}/rt/x`), 'a: hi')
  assert.deepEqual([a.ws, b.ws], [['/x'], ['/x']])
})

test("express: a proxy in a sub-app takes upgrades under the sub-app's mount path too", async (t) => {
  const up = await recordingUpstream(t)
  const app = express()
  const sub = express()
  const proxy = sockgate({ target: up.url })
  t.after(() => proxy.gateway.close())
  sub.use('/rt', proxy)
  app.use('/v1', sub)
  const url = await serve(t, app, [proxy])
  assert.equal(await wsRoundTrip(t, `${url}/v1/rt/x`), 'up: hi')
  assert.equal(await wsRoundTrip(t, `${url}/rt/x`), 'HTTP 404')
  assert.deepEqual(up.ws, ['/x'])
})

test('express: attach(server, { path }) scopes upgrades of a proxy mounted through a Router', async (t) => {
  const up = await recordingUpstream(t)
  const app = express()
  const router = express.Router()
  const proxy = sockgate({ target: up.url })
  t.after(() => proxy.gateway.close())
  router.use('/rt', proxy)
  app.use(router)
  const server = http.createServer(app)
  proxy.attach(server, { path: '/rt' })
  const url = `http://127.0.0.1:${await listen(t, server)}`
  assert.equal(await wsRoundTrip(t, `${url}/rt/x`), 'up: hi')
  await request(url).get('/rt/y')
  assert.deepEqual([up.ws, up.http], [['/x'], ['/y']])
})

test('express: listen(app, ...) attaches every proxy mounted in the app before the first connection', async (t) => {
  const a = await recordingUpstream(t, 'a')
  const b = await recordingUpstream(t, 'b')
  const warnings = captureWarnings(t)
  const app = express()
  const sub = express()
  const proxyA = sockgate({ target: a.url })
  const proxyB = sockgate({ target: b.url })
  t.after(() => Promise.all([proxyA.gateway.close(), proxyB.gateway.close()]))
  app.use('/a', proxyA)
  sub.use(proxyB)
  app.use('/b', sub)
  const server = listenApp(app, 0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  t.after(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  assert.equal(await wsRoundTrip(t, `${url}/a/x`), 'a: hi')
  assert.equal(await wsRoundTrip(t, `${url}/b/x`), 'b: hi')
  assert.deepEqual(warnings.filter((w) => w.code?.startsWith('SOCKGATE') === true), [])
})

test('express: without attach, the first HTTP request attaches the proxy and warns once how to fix it', async (t) => {
  const up = await recordingUpstream(t)
  const warnings = captureWarnings(t)
  const app = express()
  const proxy = sockgate({ target: up.url })
  t.after(() => proxy.gateway.close())
  app.use('/rt', proxy)
  const url = await serve(t, app)
  // Until a request has passed the middleware nothing handles upgrades (Node hands this one to Express as a
  // plain request): the failure the warning explains.
  assert.match(await wsRoundTrip(t, `${url}/rt/x`), /^HTTP 4\d\d$/)
  await request(url).get('/rt/page')
  await request(url).get('/rt/page')
  assert.equal(await wsRoundTrip(t, `${url}/rt/x`), 'up: hi')
  const ours = warnings.filter((w) => w.code === 'SOCKGATE_WARN_LATE_ATTACH')
  assert.equal(ours.length, 1)
  assert.match(ours[0]!.message, /proxy\.attach\(server\)/)
  assert.match(ours[0]!.message, /listen\(app, port\)/)
})

test('express: sockgate(gateway) uses the gateway it is given', async (t) => {
  const up = await recordingUpstream(t)
  const gateway = createGateway({ target: up.url })
  t.after(() => gateway.close())
  const proxy = sockgate(gateway)
  assert.equal(proxy.gateway, gateway)
  const app = express()
  app.use(proxy)
  const url = await serve(t, app, [proxy])
  assert.equal((await request(url).get('/x')).text, 'up /x')
})

test("express: an error thrown inside the proxy reaches the app's error handler through next(err)", async (t) => {
  const gateway = createGateway({ target: 'http://127.0.0.1:9' })
  t.after(() => gateway.close())
  gateway.handleRequest = () => { throw new Error('boom in the gateway') }
  const app = express()
  app.use(sockgate(gateway))
  app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).type('text').send(`handled: ${err.message}`)
  })
  const url = await serve(t, app)
  const res = await request(url).get('/x')
  assert.equal(res.status, 500)
  assert.equal(res.text, 'handled: boom in the gateway')
})

test('express: assets answer methods other than GET and HEAD with 405', async (t) => {
  const app = express()
  app.use('/assets', assets(ASSETS_DIR))
  const url = await serve(t, app)
  const res = await request(url).post('/assets/app.js')
  assert.equal(res.status, 405)
  assert.equal(res.headers.allow, 'GET, HEAD')
})

test('express: assets mounted before a request logger stay out of its access log', async (t) => {
  const logged: string[] = []
  const app = express()
  app.use('/assets', assets(ASSETS_DIR, { expires: 'max' }))
  app.use((req, _res, next) => { logged.push(req.originalUrl); next() })
  app.get('/page', (_req, res) => { res.send('page') })
  const url = await serve(t, app)
  assert.equal((await request(url).get('/assets/app.js')).status, 200)
  assert.equal((await request(url).get('/page')).status, 200)
  assert.deepEqual(logged, ['/page'])
})

test('express: assets() refuses an expires it cannot honour, naming the option', () => {
  assert.throws(() => assets(ASSETS_DIR, { expires: 'forever' as 'max' }), {
    code: 'SOCKGATE_ERR_INVALID_OPTION',
    message: /assets\(dir, options\)\.expires must be 'max', a whole number of seconds/,
  })
})
