/**
 * The demo app, once per framework: sockgate in front of the Socket.IO
 * nodes, the chat page under /assets, `/demo/config.json` for the page, and
 * `/` redirecting to the page. Each builder is the copy-paste shape of that
 * framework's setup; `core` is the same on bare `node:http`.
 */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import { createGateway, type Gateway, type GatewayOptions } from '../src/index.js'
import { assets as expressAssets, sockgate as expressProxy } from '../adapters/express.js'
import sockgatePlugin from '../adapters/fastify.js'
import { assets as koaAssets, sockgate as koaProxy } from '../adapters/koa.js'

export const FRAMEWORKS = ['express', 'koa', 'fastify', 'core'] as const
export type Framework = typeof FRAMEWORKS[number]

/** What the page reads from `/demo/config.json`. */
export interface PageConfig {
  framework: Framework
  transport: string
  statusPath: string | null
}

export interface AppSettings {
  gateway: GatewayOptions
  publicDir: string
  config: PageConfig
}

/** A demo app that can listen and be closed. */
export interface DemoApp {
  /** Listen on `port` (0: any free one) and resolve with the app's origin (`/` redirects to the page). */
  listen: (port: number, host: string) => Promise<string>
  /** Close the gateway (open tunnels get a moment to finish) and the server. */
  close: () => Promise<void>
}

/** Seconds browsers may cache /assets: short, since people edit the demo (production: `expires: 'max'`). */
const ASSET_MAX_AGE = 60
/** How long open tunnels may run on after Ctrl+C; the nodes have already disconnected their clients by then. */
const DRAIN_MS = 2_000
const PAGE = '/assets/index.html'

export async function createApp (framework: Framework, settings: AppSettings): Promise<DemoApp> {
  switch (framework) {
    case 'express': return createExpressApp(settings)
    case 'koa': return createKoaApp(settings)
    case 'fastify': return await createFastifyApp(settings)
    case 'core': return createCoreApp(settings)
  }
}

function listenOn (server: http.Server): DemoApp['listen'] {
  return (port, host) => new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve(origin(server))
    })
  })
}

function origin (server: http.Server): string {
  const { address, port } = server.address() as AddressInfo
  return `http://${address.includes(':') ? `[${address}]` : address}:${port}`
}

function closeServer (server: http.Server, gateway: Gateway): DemoApp['close'] {
  return async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeIdleConnections()
    await gateway.close({ drain: DRAIN_MS })
    server.closeAllConnections()
    await closed
  }
}

// ---------------------------------------------------------------------------------------------
// express: docs/express.md

function createExpressApp ({ gateway, publicDir, config }: AppSettings): DemoApp {
  const app = express()
  const proxy = expressProxy(gateway)
  app.use(proxy)
  app.use('/assets', expressAssets(publicDir, { expires: ASSET_MAX_AGE }))
  app.get('/demo/config.json', (_req, res) => { res.json(config) })
  app.get('/', (_req, res) => { res.redirect(PAGE) })
  const server = http.createServer(app)
  proxy.attach(server)
  return { listen: listenOn(server), close: closeServer(server, proxy.gateway) }
}

// ---------------------------------------------------------------------------------------------
// koa: docs/koa.md

function createKoaApp ({ gateway, publicDir, config }: AppSettings): DemoApp {
  const app = new Koa()
  const proxy = koaProxy(gateway)
  app.use(proxy)
  app.use(koaAssets('/assets', publicDir, { expires: ASSET_MAX_AGE }))
  app.use(async (ctx, next) => {
    if (ctx.method !== 'GET') return await next()
    if (ctx.path === '/demo/config.json') ctx.body = config
    else if (ctx.path === '/') ctx.redirect(PAGE)
    else await next()
  })
  const server = http.createServer(app.callback())
  proxy.attach(server)
  return { listen: listenOn(server), close: closeServer(server, proxy.gateway) }
}

// ---------------------------------------------------------------------------------------------
// fastify: docs/fastify.md. The plugin attaches itself, and app.close() closes the gateway.

async function createFastifyApp ({ gateway, publicDir, config }: AppSettings): Promise<DemoApp> {
  const app = Fastify()
  await app.register(sockgatePlugin, {
    ...gateway,
    assets: { '/assets': { root: publicDir, expires: ASSET_MAX_AGE } },
    closeDrain: DRAIN_MS,
  })
  app.get('/demo/config.json', async () => config)
  app.get('/', async (_request, reply) => reply.redirect(PAGE))
  return {
    listen: async (port, host) => {
      await app.listen({ port, host })
      return origin(app.server)
    },
    close: () => app.close(),
  }
}

// ---------------------------------------------------------------------------------------------
// core: node:http + createGateway, and a tiny static file handler

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
}

/** Serve a file of `dir` for `/assets/<name>`; 404 for anything else, including any way out of `dir`. */
async function serveAsset (dir: string, url: string, res: http.ServerResponse): Promise<void> {
  let name: string
  try {
    name = decodeURIComponent(url.slice('/assets/'.length).split('?')[0] ?? '')
  } catch {
    name = ''
  }
  const file = path.resolve(dir, name)
  const info = name === '' || !file.startsWith(dir) ? undefined : await stat(file).catch(() => undefined)
  if (info?.isFile() !== true) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found\n')
    return
  }
  res.writeHead(200, {
    'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
    'content-length': info.size,
    'cache-control': `public, max-age=${ASSET_MAX_AGE}`,
  })
  createReadStream(file).pipe(res)
}

function createCoreApp ({ gateway: options, publicDir, config }: AppSettings): DemoApp {
  const gateway = createGateway(options)
  const server = http.createServer((req, res) => {
    gateway.handleRequest(req, res, () => {
      const url = req.url ?? '/'
      if (url === '/') res.writeHead(302, { location: PAGE }).end()
      else if (url === '/demo/config.json') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(config))
      else if (url.startsWith('/assets/') && (req.method === 'GET' || req.method === 'HEAD')) serveAsset(publicDir, url, res).catch((err: unknown) => res.destroy(err as Error))
      else res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found\n')
    })
  })
  gateway.attach(server)
  return { listen: listenOn(server), close: closeServer(server, gateway) }
}
