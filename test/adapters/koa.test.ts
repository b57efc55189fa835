import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import Koa from 'koa'
import request from 'supertest'
import { createGateway } from '../../src/index.js'
import { assets, listen as listenApp, sockgate, type KoaMiddleware } from '../../adapters/koa.js'
import { listen } from '../helpers/servers.js'
import { ASSETS_DIR, buildKoa } from './apps.js'
import { runScenarios } from './scenarios.js'
import { captureWarnings, recordingUpstream, wsRoundTrip } from './upstreams.js'

runScenarios('koa', buildKoa)

async function serve (t: TestContext, app: Koa, attach: (server: http.Server) => void = () => {}): Promise<string> {
  const server = http.createServer(app.callback())
  attach(server)
  const port = await listen(t, server)
  return `http://127.0.0.1:${port}`
}

/** What koa-mount does: run `mw` for paths under `prefix`, with `ctx.path` shortened. */
function mount (prefix: string, mw: KoaMiddleware): Koa.Middleware {
  return async (ctx, next) => {
    const prev = ctx.path
    if (prev !== prefix && !prev.startsWith(prefix + '/')) return await next()
    ctx.path = prev.slice(prefix.length) || '/'
    try {
      await mw(ctx, async () => {
        ctx.path = prev
        await next()
      })
    } finally {
      ctx.path = prev
    }
  }
}

test('koa: attach(server, { path }) takes upgrades under a mount prefix, stripped as the mount strips HTTP', async (t) => {
  const up = await recordingUpstream(t)
  const app = new Koa()
  const proxy = sockgate({ target: up.url })
  t.after(() => proxy.gateway.close())
  app.use(mount('/rt', proxy))
  const url = await serve(t, app, (server) => proxy.attach(server, { path: '/rt' }))
  assert.equal(await wsRoundTrip(t, `${url}/rt/x?y=1`), 'up: hi')
  assert.equal(await wsRoundTrip(t, `${url}/x`), 'HTTP 404')
  await request(url).get('/rt/x?y=1')
  assert.deepEqual([up.ws, up.http], [['/x?y=1'], ['/x?y=1']])
})

test('koa: listen(app, ...) attaches every proxy in app.middleware before the first connection', async (t) => {
  const up = await recordingUpstream(t)
  const warnings = captureWarnings(t)
  const app = new Koa()
  const proxy = sockgate({ target: up.url })
  t.after(() => proxy.gateway.close())
  app.use(proxy)
  const server = listenApp(app, 0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  t.after(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  assert.equal(await wsRoundTrip(t, `${url}/x`), 'up: hi')
  assert.deepEqual(warnings.filter((w) => w.code?.startsWith('SOCKGATE') === true), [])
})

test('koa: without attach, the first HTTP request attaches the proxy at its mount prefix and warns once how to fix it', async (t) => {
  const up = await recordingUpstream(t)
  const warnings = captureWarnings(t)
  const app = new Koa()
  const proxy = sockgate({ target: up.url })
  t.after(() => proxy.gateway.close())
  app.use(mount('/rt', proxy))
  const url = await serve(t, app)
  await request(url).get('/rt/page')
  await request(url).get('/rt/page')
  assert.equal(await wsRoundTrip(t, `${url}/rt/x`), 'up: hi')
  assert.deepEqual(up.ws, ['/x'])
  const ours = warnings.filter((w) => w.code === 'SOCKGATE_WARN_LATE_ATTACH')
  assert.equal(ours.length, 1)
  assert.match(ours[0]!.message, /proxy\.attach\(server\)/)
})

test('koa: middleware ahead of the proxy resumes once the proxied answer is complete, with ctx.respond false', async (t) => {
  const up = await recordingUpstream(t)
  const proxy = sockgate({ target: up.url, routes: [{ path: '/up', upstream: 'default' }] })
  t.after(() => proxy.gateway.close())
  const seen: Array<{ path: string, respond: boolean | undefined, ended: boolean, status: number }> = []
  const app = new Koa()
  app.use(async (ctx, next) => {
    await next()
    seen.push({ path: ctx.path, respond: ctx.respond, ended: ctx.res.writableEnded, status: ctx.res.statusCode })
  })
  app.use(proxy)
  app.use((ctx) => { ctx.status = 204 })
  const url = await serve(t, app, (server) => proxy.attach(server))
  await request(url).get('/up/x')
  await request(url).get('/mine')
  assert.deepEqual(seen, [
    { path: '/up/x', respond: false, ended: true, status: 200 },
    { path: '/mine', respond: undefined, ended: false, status: 204 },
  ])
})

test('koa: a proxied request raises no error in the Koa app', async (t) => {
  const up = await recordingUpstream(t)
  const proxy = sockgate({ target: up.url })
  t.after(() => proxy.gateway.close())
  const errors: Error[] = []
  const app = new Koa()
  app.on('error', (err: Error) => errors.push(err))
  app.use(proxy)
  const url = await serve(t, app, (server) => proxy.attach(server))
  for (let i = 0; i < 3; i++) assert.equal((await request(url).get(`/x${i}`)).text, `up /x${i}`)
  assert.deepEqual(errors, [])
})

test('koa: sockgate(gateway) uses the gateway it is given', async (t) => {
  const up = await recordingUpstream(t)
  const gateway = createGateway({ target: up.url })
  t.after(() => gateway.close())
  const proxy = sockgate(gateway)
  assert.equal(proxy.gateway, gateway)
  const app = new Koa()
  app.use(proxy)
  const url = await serve(t, app, (server) => proxy.attach(server))
  assert.equal((await request(url).get('/x')).text, 'up /x')
})

test('koa: assets answer methods other than GET and HEAD with 405', async (t) => {
  const app = new Koa()
  app.use(assets('/assets', ASSETS_DIR))
  const url = await serve(t, app)
  const res = await request(url).post('/assets/app.js')
  assert.equal(res.status, 405)
  assert.equal(res.headers.allow, 'GET, HEAD')
})

test('koa: assets mounted before a request logger stay out of its access log', async (t) => {
  const logged: string[] = []
  const app = new Koa()
  app.use(assets('/assets', ASSETS_DIR, { expires: 'max' }))
  app.use(async (ctx, next) => { logged.push(ctx.path); await next() })
  app.use((ctx) => { ctx.body = 'page' })
  const url = await serve(t, app)
  assert.equal((await request(url).get('/assets/app.js')).status, 200)
  assert.equal((await request(url).get('/page')).status, 200)
  assert.deepEqual(logged, ['/page'])
})

test('koa: assets() refuses a prefix with route syntax, naming the argument', () => {
  assert.throws(() => assets('/assets/:name', ASSETS_DIR), { code: 'SOCKGATE_ERR_INVALID_OPTION', message: /assets\(prefix\)/ })
})
