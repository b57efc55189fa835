/**
 * The same app, built once per framework, for the shared scenarios
 * (scenarios.ts) and the TLS tests. Each has, in this order:
 *
 * - static mounts: `/assets` (expires max), `/cached` (expires 60), `/plain` (expires off), all of
 *   `test/fixtures/www/assets`;
 * - `GET /app/before`, an app route ahead of the proxy;
 * - the proxy (`spec.gateway`), attached the documented way;
 * - `GET /app/after`, an app route behind the proxy (reached only through `next()`), and a JSON body parser;
 * - a fallback answering 404 `app: not found`.
 */
import http from 'node:http'
import https from 'node:https'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { TestContext } from 'node:test'
import express from 'express'
import Koa from 'koa'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Gateway, GatewayOptions } from '../../src/index.js'
import { assets as expressAssets, sockgate as expressProxy } from '../../adapters/express.js'
import { assets as koaAssets, sockgate as koaProxy } from '../../adapters/koa.js'
import sockgatePlugin from '../../adapters/fastify.js'

export const ASSETS_DIR = fileURLToPath(new URL('../fixtures/www/assets', import.meta.url))

/** What every app is built from. */
export interface AppSpec {
  gateway: GatewayOptions
  /** Serve HTTPS with this key and certificate. */
  tls?: { key: string | Buffer, cert: string | Buffer }
}

/** A listening app. */
export interface AppUnderTest {
  server: http.Server
  port: number
  /** `http://127.0.0.1:<port>` or `https://...`. */
  url: string
  gateway: Gateway
}

export type BuildApp = (t: TestContext, spec: AppSpec) => Promise<AppUnderTest>

/** Every TCP socket `server` accepts, upgraded ones included, so a test's end can cut them and closing never waits on a client. */
function connectionsOf (server: http.Server): Set<Duplex> {
  const sockets = new Set<Duplex>()
  server.on('connection', (socket: Duplex) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  return sockets
}

async function listening (t: TestContext, server: http.Server, gateway: Gateway, tls: boolean): Promise<AppUnderTest> {
  const sockets = connectionsOf(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(async () => {
    for (const s of sockets) s.destroy()
    await gateway.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const port = (server.address() as AddressInfo).port
  return { server, port, url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`, gateway }
}

export const buildExpress: BuildApp = async (t, spec) => {
  const app = express()
  app.use('/assets', expressAssets(ASSETS_DIR, { expires: 'max' }))
  app.use('/cached', expressAssets(ASSETS_DIR, { expires: 60 }))
  app.use('/plain', expressAssets(ASSETS_DIR, { expires: false }))
  app.get('/app/before', (_req, res) => { res.type('text').send('app before') })
  const proxy = expressProxy(spec.gateway)
  app.use(proxy)
  app.use(express.json())
  app.get('/app/after', (_req, res) => { res.type('text').send('app after') })
  app.use((_req, res) => { res.status(404).type('text').send('app: not found') })
  const server = spec.tls === undefined ? http.createServer(app) : https.createServer(spec.tls, app) as unknown as http.Server
  proxy.attach(server)
  return await listening(t, server, proxy.gateway, spec.tls !== undefined)
}

export const buildKoa: BuildApp = async (t, spec) => {
  const app = new Koa()
  app.use(koaAssets('/assets', ASSETS_DIR, { expires: 'max' }))
  app.use(koaAssets('/cached', ASSETS_DIR, { expires: 60 }))
  app.use(koaAssets('/plain', ASSETS_DIR, { expires: false }))
  app.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/app/before') ctx.body = 'app before'
    else await next()
  })
  const proxy = koaProxy(spec.gateway)
  app.use(proxy)
  app.use(async (ctx) => {
    if (ctx.method === 'GET' && ctx.path === '/app/after') {
      ctx.body = 'app after'
      return
    }
    ctx.status = 404
    ctx.body = 'app: not found'
  })
  const server = spec.tls === undefined ? http.createServer(app.callback()) : https.createServer(spec.tls, app.callback()) as unknown as http.Server
  proxy.attach(server)
  return await listening(t, server, proxy.gateway, spec.tls !== undefined)
}

export const buildFastify: BuildApp = async (t, spec) => {
  const app = (spec.tls === undefined ? Fastify() : Fastify({ https: spec.tls })) as unknown as FastifyInstance
  app.get('/app/before', async () => 'app before')
  await app.register(sockgatePlugin, {
    ...spec.gateway,
    assets: {
      '/assets': { root: ASSETS_DIR, expires: 'max' },
      '/cached': { root: ASSETS_DIR, expires: 60 },
      '/plain': ASSETS_DIR,
    },
  })
  app.get('/app/after', async () => 'app after')
  app.setNotFoundHandler((_request, reply) => { reply.code(404).type('text/plain').send('app: not found') })
  const sockets = connectionsOf(app.server)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.after(async () => {
    for (const s of sockets) s.destroy()
    await app.close()
  })
  const port = (app.server.address() as AddressInfo).port
  return { server: app.server, port, url: `${spec.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`, gateway: app.sockgate }
}
