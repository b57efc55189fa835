/**
 * The demo app, once per framework: sockgate in front of the Socket.IO
 * nodes, the chat page under /assets, `/demo/config.json` for the page,
 * `/demo/nodes` for its stop / start / drain buttons, and `/` redirecting
 * to the page. Each builder is the copy-paste shape of that
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
import { CONTROL_PATH, type NodeControls } from './controls.js'
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
  /** How long the Drain button lets a node's tunnels run, for the page's explanation. */
  drainTimeoutMs: number
}

export interface AppSettings {
  gateway: GatewayOptions
  publicDir: string
  config: PageConfig
  /** The node controls, given the gateway the app built (the drain button needs its pool). */
  controls: (gateway: Gateway) => NodeControls
}

/** A demo app that can listen and be closed. */
export interface DemoApp {
  /** The gateway in front of the nodes, and the server it is attached to (what sockgate/cluster drains). */
  gateway: Gateway
  server: http.Server
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

function createExpressApp ({ gateway, publicDir, config, controls: makeControls }: AppSettings): DemoApp {
  const app = express()
  const proxy = expressProxy(gateway)
  const controls = makeControls(proxy.gateway)
  app.use(proxy)
  app.use('/assets', expressAssets(publicDir, { expires: ASSET_MAX_AGE }))
  app.get('/demo/config.json', (_req, res) => { res.json(config) })
  app.get('/demo/nodes', (_req, res) => { res.json(controls.list()) })
  app.post('/demo/nodes/:name/:action', async (req, res) => {
    const answer = await controls.act(req.params.name, req.params.action)
    res.status(answer.status).json(answer.body)
  })
  app.get('/', (_req, res) => { res.redirect(PAGE) })
  const server = http.createServer(app)
  proxy.attach(server)
  return { gateway: proxy.gateway, server, listen: listenOn(server), close: closeServer(server, proxy.gateway) }
}

// ---------------------------------------------------------------------------------------------
// koa: docs/koa.md

function createKoaApp ({ gateway, publicDir, config, controls: makeControls }: AppSettings): DemoApp {
  const app = new Koa()
  const proxy = koaProxy(gateway)
  const controls = makeControls(proxy.gateway)
  app.use(proxy)
  app.use(koaAssets('/assets', publicDir, { expires: ASSET_MAX_AGE }))
  app.use(async (ctx, next) => {
    const control = ctx.method === 'POST' ? CONTROL_PATH.exec(ctx.path) : null
    if (control !== null) {
      const answer = await controls.act(control[1]!, control[2]!)
      ctx.status = answer.status
      ctx.body = answer.body
    } else if (ctx.method !== 'GET') {
      await next()
    } else if (ctx.path === '/demo/config.json') {
      ctx.body = config
    } else if (ctx.path === '/demo/nodes') {
      ctx.body = controls.list()
    } else if (ctx.path === '/') {
      ctx.redirect(PAGE)
    } else {
      await next()
    }
  })
  const server = http.createServer(app.callback())
  proxy.attach(server)
  return { gateway: proxy.gateway, server, listen: listenOn(server), close: closeServer(server, proxy.gateway) }
}

// ---------------------------------------------------------------------------------------------
// fastify: docs/fastify.md. The plugin attaches itself, and app.close() closes the gateway.

async function createFastifyApp ({ gateway, publicDir, config, controls: makeControls }: AppSettings): Promise<DemoApp> {
  const app = Fastify()
  await app.register(sockgatePlugin, {
    ...gateway,
    assets: { '/assets': { root: publicDir, expires: ASSET_MAX_AGE } },
    closeDrain: DRAIN_MS,
  })
  const controls = makeControls(app.sockgate)
  app.get('/demo/config.json', async () => config)
  app.get('/demo/nodes', async () => controls.list())
  app.post<{ Params: { name: string, action: string } }>('/demo/nodes/:name/:action', async (request, reply) => {
    const answer = await controls.act(request.params.name, request.params.action)
    return reply.code(answer.status).send(answer.body)
  })
  app.get('/', async (_request, reply) => reply.redirect(PAGE))
  return {
    gateway: app.sockgate,
    server: app.server,
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

function sendJson (res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}

function createCoreApp ({ gateway: options, publicDir, config, controls: makeControls }: AppSettings): DemoApp {
  const gateway = createGateway(options)
  const controls = makeControls(gateway)
  const server = http.createServer((req, res) => {
    gateway.handleRequest(req, res, () => {
      const url = req.url ?? '/'
      const control = req.method === 'POST' ? CONTROL_PATH.exec(url) : null
      if (control !== null) controls.act(control[1]!, control[2]!).then((answer) => sendJson(res, answer.status, answer.body))
      else if (url === '/') res.writeHead(302, { location: PAGE }).end()
      else if (url === '/demo/config.json') sendJson(res, 200, config)
      else if (url === '/demo/nodes') sendJson(res, 200, controls.list())
      else if (url.startsWith('/assets/') && (req.method === 'GET' || req.method === 'HEAD')) serveAsset(publicDir, url, res).catch((err: unknown) => res.destroy(err as Error))
      else res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found\n')
    })
  })
  gateway.attach(server)
  return { gateway, server, listen: listenOn(server), close: closeServer(server, gateway) }
}
