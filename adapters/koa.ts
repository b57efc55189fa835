/**
 * `sockgate/koa`: the gateway as Koa (2/3) middleware, plus a static
 * `/assets` helper built on koa-send.
 *
 * ```ts
 * const proxy = sockgate({ target: ['http://127.0.0.1:5001', 'http://127.0.0.1:5002'] })
 * app.use(assets('/assets', dir, { expires: 'max' }))
 * app.use(proxy)
 * const server = listen(app, 80)          // or: proxy.attach(app.listen(80))
 * ```
 *
 * Koa never sees upgrades (Node emits them on the `http.Server`), so the
 * middleware has an upgrade side too: `attach(server)`.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type KoaSend from 'koa-send'
import { attachPaths, createGateway, Gateway, InvalidOptionError, normalizeMountPath, ServerMounts, type GatewayOptions } from '../src/index.js'
import {
  ALLOWED_METHODS, cacheHeaders, checkRoot, fileEtag, isReadMethod, isSafeAssetPath, MOVED_TEXT, normalizeAssetsOptions, pathBelow, pathOf,
  slashLocation, type AssetsOptions,
} from './assets.js'
import { isServer, requirePeer } from './common.js'

export type { AssetsOptions, Expires } from './assets.js'

/** The parts of a Koa context sockgate uses (Koa 2 and 3 both have them). */
export interface KoaContext {
  req: IncomingMessage
  res: ServerResponse
  /** Koa skips its own response handling when this is `false`. */
  respond?: boolean
  method: string
  /** The path, still percent-encoded; middleware like koa-mount may have shortened it. */
  path: string
  /** The request target as it came in, before any middleware changed it. */
  originalUrl: string
  status: number
  body: unknown
  /** Koa's request; body parsers (koa-bodyparser, @koa/bodyparser) leave what they read here, as `body` and `rawBody`. */
  request?: object
  set (field: string, value: string): void
  remove (field: string): void
}

/** Koa's `next`. */
export type Next = () => Promise<unknown>

/** A Koa middleware. */
export type KoaMiddleware = (ctx: KoaContext, next: Next) => Promise<void>

/** Options of `proxy.attach()`. */
export interface AttachOptions {
  /**
   * Path prefix(es) whose upgrades this middleware takes, stripped before
   * routing. Koa's `app.use()` has no mount path; give the prefix here when
   * the middleware sits behind one (koa-mount, a router prefix), so upgrades
   * are routed on the same URL as HTTP. Default: `'/'`.
   */
  path?: string | string[]
}

/** The middleware `sockgate()` returns. */
export interface SockgateMiddleware extends KoaMiddleware {
  /** The gateway behind the middleware (status, events, pools, `close()`). */
  readonly gateway: Gateway
  /**
   * Handle upgrades on `server` (idempotent; call it again to change `path`).
   * Do it right after creating the server, before it gets connections: the
   * first WebSocket may arrive before any HTTP request.
   */
  attach (server: Server, options?: AttachOptions): this
}

/** What `listen()` needs of an app: Koa's `listen()` and its middleware list. */
export interface ListenableApp {
  listen (...args: any[]): Server
  middleware: readonly unknown[]
}

const proxies = new WeakSet<object>()

/**
 * Make Koa middleware from gateway options, or from a gateway already built
 * (so one gateway can serve several apps). Requests the gateway's routes
 * match are proxied with `ctx.respond = false`; the rest go on to `next()`.
 */
export function sockgate (options: GatewayOptions | Gateway): SockgateMiddleware {
  const gateway = options instanceof Gateway ? options : createGateway(options)
  const servers = new Map<Server, ServerMounts>()
  let warned = false

  function attach (server: Server, paths: string[]): void {
    let mounts = servers.get(server)
    if (mounts === undefined) {
      gateway.readProxyHeaders(server)
      const m = new ServerMounts(server, gateway)
      mounts = m
      servers.set(server, m)
      server.once('close', () => {
        m.clear()
        servers.delete(server)
      })
    }
    mounts.set(paths)
  }

  /** Attach to the server of a request nobody attached us to (the first-request fallback), and say how to do it properly. */
  function attachLate (ctx: KoaContext): void {
    const server = (ctx.req.socket as { server?: unknown }).server
    if (!isServer(server) || servers.has(server)) return
    attach(server, [mountedAt(pathOf(ctx.originalUrl), ctx.path)])
    if (warned) return
    warned = true
    process.emitWarning('sockgate handled no upgrades on this server until its first HTTP request, so WebSocket ' +
      'connections before it failed. Call proxy.attach(server) right after creating the server, or start it with ' +
      "listen(app, port) from 'sockgate/koa'.", { type: 'SockgateWarning', code: 'SOCKGATE_WARN_LATE_ATTACH' })
  }

  const middleware = async function sockgate (ctx: KoaContext, next: Next): Promise<void> {
    attachLate(ctx)
    handOverParsedBody(ctx)
    const res = ctx.res
    const respond = ctx.respond
    // Resolves true when the gateway has no route for the request, false once the proxied answer is over.
    const passed = await new Promise<boolean>((resolve, reject) => {
      const onClose = (): void => resolve(false)
      res.once('close', onClose)
      // Koa must keep its hands off `res` while the gateway writes to it.
      ctx.respond = false
      try {
        gateway.handleRequest(ctx.req, res, () => {
          res.removeListener('close', onClose)
          resolve(true)
        })
      } catch (err) {
        res.removeListener('close', onClose)
        reject(err)
      }
    })
    if (!passed) return
    ctx.respond = respond
    await next()
  } as SockgateMiddleware

  Object.defineProperty(middleware, 'gateway', { value: gateway, enumerable: true })
  middleware.attach = function (server: Server, attachOptions: AttachOptions = {}) {
    attach(server, attachPaths(attachOptions.path ?? '/'))
    return middleware
  }
  proxies.add(middleware)
  return middleware
}

/**
 * A Koa body parser keeps what it read on `ctx.request`, where the core
 * does not look: hand it to `req.body`, the raw text when the parser kept it
 * (the exact bytes the client sent), so the core can send it on.
 */
function handOverParsedBody (ctx: KoaContext): void {
  const req = ctx.req as IncomingMessage & { body?: unknown }
  if (!req.readableDidRead || req.body !== undefined || ctx.request === undefined) return
  const { rawBody, body } = ctx.request as { rawBody?: unknown, body?: unknown }
  req.body = typeof rawBody === 'string' ? rawBody : body
}

/**
 * The prefix a mount middleware (koa-mount) took off: `/rt/socket.io/` seen
 * as `/socket.io/` was mounted at `/rt`.
 */
function mountedAt (originalPath: string, path: string): string {
  if (originalPath === path) return '/'
  if (path === '/') return normalizeMountPath(originalPath) ?? '/'
  if (originalPath.endsWith(path)) return normalizeMountPath(originalPath.slice(0, -path.length)) ?? '/'
  return '/'
}

/**
 * `app.listen(...args)` that also attaches every sockgate middleware in
 * `app.middleware` to the new server before it takes a connection. (One
 * wrapped by another middleware, such as koa-mount, is not visible there:
 * attach that one yourself with its `path`.) Returns the server.
 */
export function listen (app: ListenableApp, ...args: unknown[]): Server {
  const server = app.listen(...args)
  for (const fn of app.middleware) {
    if (typeof fn === 'function' && proxies.has(fn)) (fn as SockgateMiddleware).attach(server)
  }
  return server
}

/**
 * Serve the files under `dir` at `prefix`, as nginx's
 * `location /assets { alias dir; expires max; }`:
 * `app.use(assets('/assets', dir, { expires: 'max' }))`. Built on koa-send.
 * Koa's `app.use()` has no mount path, so the helper takes one.
 *
 * Requests under `prefix` end here. Files carry an ETag and Last-Modified,
 * and a conditional GET or HEAD that still matches gets 304. `prefix`
 * without its slash (`/assets?v=2`) is redirected (301) to `/assets/?v=2`,
 * as nginx does for a directory. Missing files, directories (never listed),
 * dot-files and any path that tries to leave `dir` (`..`, `%2e%2e`,
 * `..%2f`) get 404; methods other than GET and HEAD get 405. The rest of
 * the app (`/assets-private`, ...) goes on to `next()`. Mount it before a
 * request logger to keep it out of the access log (nginx `access_log off`).
 */
export function assets (prefix: string, dir: string, options?: AssetsOptions): KoaMiddleware {
  const mount = typeof prefix === 'string' ? normalizeMountPath(prefix) : undefined
  if (mount === undefined) throw new InvalidOptionError('assets(prefix)', "must be a plain path prefix such as '/assets'")
  const root = checkRoot(dir, 'assets(prefix, dir)')
  const { expires, index } = normalizeAssetsOptions(options, 'assets(prefix, dir, options)')
  const send = requirePeer<typeof KoaSend>('koa', 'assets()', 'koa-send')
  return async function sockgateAssets (ctx: KoaContext, next: Next): Promise<void> {
    const rest = pathBelow(mount, ctx.path)
    if (rest === undefined) {
      await next()
      return
    }
    if (!isSafeAssetPath(rest)) return notFound(ctx)
    if (!isReadMethod(ctx.method)) {
      ctx.status = 405
      ctx.set('Allow', ALLOWED_METHODS)
      return
    }
    if (rest === '') {
      ctx.status = 301
      ctx.set('Location', slashLocation(ctx.originalUrl) ?? `${mount}/`)
      ctx.body = MOVED_TEXT
      return
    }
    let served: string | undefined
    try {
      served = await send(ctx as unknown as Parameters<typeof send>[0], rest, {
        root,
        index: index === false ? undefined : index,
        format: false,
        hidden: false,
        gzip: false,
        brotli: false,
        setHeaders (res, _path, stats) {
          res.setHeader('ETag', fileEtag(stats))
          for (const [name, value] of cacheHeaders(expires)) res.setHeader(name, value)
        },
      })
    } catch (err) {
      const status = (err as { status?: unknown }).status
      if (typeof status === 'number' && status < 500) return notFound(ctx)
      throw err
    }
    if (served === undefined) return notFound(ctx)
    // koa-send always sets a Cache-Control; nginx's `expires off` sends none.
    if (expires === false) ctx.remove('Cache-Control')
    // Koa's `fresh` weighs If-None-Match and If-Modified-Since against the ETag and Last-Modified just set (RFC 9110 §13.1.1, §13.1.3).
    if ((ctx as KoaContext & { fresh: boolean }).fresh) {
      // A 304 has no body: close the file koa-send opened here, rather than count on the Koa major in use to drop it.
      (ctx.body as { destroy: () => void }).destroy()
      ctx.status = 304
    }
  }
}

function notFound (ctx: KoaContext): void {
  ctx.status = 404
  ctx.body = 'Not Found\n'
}
