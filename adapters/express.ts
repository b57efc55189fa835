/**
 * `sockgate/express`: the gateway as Express 4/5 middleware, plus a static
 * `/assets` helper built on serve-static.
 *
 * ```ts
 * const proxy = sockgate({ target: ['http://127.0.0.1:5001', 'http://127.0.0.1:5002'] })
 * app.use('/assets', assets(dir, { expires: 'max' }))
 * app.use(proxy)
 * const server = listen(app, 80)          // or: proxy.attach(app.listen(80))
 * ```
 *
 * Express never sees upgrades (Node emits them on the `http.Server`), so the
 * middleware has an upgrade side too: `attach(server)`. Express tells the
 * middleware where it is mounted (`app.use('/rt', proxy)`) at mount time, the
 * way it tells a sub-app, so upgrades are scoped to the mount path from the
 * first connection, and stripped of it as Express strips it for HTTP.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type ServeStatic from 'serve-static'
import {
  attachPaths, createGateway, Gateway, InvalidOptionError, normalizeMountPath, ServerMounts, type GatewayOptions,
} from '../src/index.js'
import {
  cacheHeaders, checkRoot, isReadMethod, isSafeAssetPath, MOVED_TEXT, normalizeAssetsOptions, pathOf, slashLocation, type AssetsOptions,
} from './assets.js'
import { isServer, notFound, requirePeer } from './common.js'

export type { AssetsOptions, Expires } from './assets.js'

/** Express's `next`: called with nothing to go on, with an error to hand it to the error handlers. */
export type NextFunction = (err?: unknown) => void

/** Options of `proxy.attach()`. */
export interface AttachOptions {
  /**
   * Path prefix(es) whose upgrades this middleware takes, stripped before
   * routing. Needed only where Express cannot say: a mount through an
   * `express.Router()`, or a RegExp or `:param` mount path.
   * Default: the paths the middleware was mounted at with `app.use()`, or `'/'`.
   */
  path?: string | string[]
}

/** Options of the Express middleware itself, beside the gateway's. */
export interface MiddlewareOptions {
  /**
   * Hand failures (502, 503, 504, 400...) to `next(err)`, so the app's own
   * error handler answers them; `err` is a `SockgateError` with `statusCode`.
   * Default: `false` (the gateway answers, or its `onError` hook).
   */
  next?: boolean
}

/** The middleware `sockgate()` returns. */
export interface SockgateMiddleware {
  /** Express middleware: proxies what the gateway's routes match, calls `next()` for the rest. */
  (req: IncomingMessage, res: ServerResponse, next: NextFunction): void
  /** The gateway behind the middleware (status, events, pools, `close()`). */
  readonly gateway: Gateway
  /**
   * Handle upgrades on `server` (idempotent; call it again to change `path`).
   * Do it right after creating the server, before it gets connections: the
   * first WebSocket may arrive before any HTTP request.
   */
  attach (server: Server, options?: AttachOptions): this
  /**
   * Part of Express's mount protocol (Express calls `handle` and `set` of
   * anything mounted with `app.use()` that has both, and emits `'mount'` on
   * it), which is how the middleware learns its mount path. Not for direct use.
   */
  handle (req: IncomingMessage, res: ServerResponse, next: NextFunction): void
  /** Part of Express's mount protocol; a no-op. */
  set (setting?: string, value?: unknown): this
  /** Part of Express's mount protocol: Express emits `'mount'` with the parent app. */
  emit (event: string | symbol, ...args: unknown[]): boolean
  /** Set by Express: where `app.use()` last mounted the middleware. */
  mountpath?: string | RegExp | Array<string | RegExp>
}

/** The parts of an Express app sockgate reads; Express 4 and 5 both have them. */
interface ExpressApp {
  parent?: ExpressApp
  path?: () => string
  on?: (event: 'mount', listener: (parent: ExpressApp) => void) => unknown
}

/** What `listen()` needs of an app. */
export interface ListenableApp {
  listen (...args: any[]): Server
}

interface ServerState {
  /** Paths given with `attach(server, { path })`; they override everything else. */
  explicit: string[] | undefined
  /** Path learnt from the first request when the middleware was not mounted with `app.use()`. */
  learnt: string | undefined
  /** The upgrade handlers registered on the server. */
  mounts: ServerMounts
  onClose: () => void
}

/** Every middleware mounted (directly or through sub-apps) in an app, for `listen()`. */
const proxiesByApp = new WeakMap<object, Set<SockgateMiddleware>>()

const WARNING_TYPE = 'SockgateWarning'

/**
 * Make Express middleware from gateway options, or from a gateway already
 * built (so one gateway can serve several apps).
 */
export function sockgate (options: GatewayOptions | Gateway, middlewareOptions: MiddlewareOptions = {}): SockgateMiddleware {
  const gateway = options instanceof Gateway ? options : createGateway(options)
  if (typeof middlewareOptions !== 'object' || middlewareOptions === null) {
    throw new InvalidOptionError('sockgate(options, middlewareOptions)', 'must be an object such as { next: true }')
  }
  const { next: failuresToNext = false, ...unknownOptions } = middlewareOptions
  const unknownOption = Object.keys(unknownOptions)[0]
  if (unknownOption !== undefined) throw new InvalidOptionError(unknownOption, 'is not a middleware option (expected: next)')
  if (typeof failuresToNext !== 'boolean') throw new InvalidOptionError('next', 'must be a boolean')
  const mounts: Array<{ parent: ExpressApp, path: unknown }> = []
  const servers = new Map<Server, ServerState>()
  const watched = new WeakSet<object>()
  const warned = new Set<string>()

  function warnOnce (code: string, message: string): void {
    if (warned.has(code)) return
    warned.add(code)
    process.emitWarning(message, { type: WARNING_TYPE, code })
  }

  /** Full mount paths from `app.use()` (parents' mount paths included), or undefined if never mounted that way. */
  function mountPaths (): string[] | undefined {
    if (mounts.length === 0) return undefined
    const paths = new Set<string>()
    for (const { parent, path } of mounts) {
      const base = typeof parent.path === 'function' ? parent.path() : ''
      for (const p of Array.isArray(path) ? path : [path]) {
        const full = typeof p === 'string' && typeof base === 'string' ? normalizeMountPath(base + (p === '/' ? '' : p)) : undefined
        if (full === undefined) {
          warnOnce('SOCKGATE_WARN_MOUNT_PATH', `sockgate is mounted at ${String(p)}, which is not a plain path prefix, so upgrades there cannot be matched; ` +
            "name the prefix with proxy.attach(server, { path: '/...' }).")
        } else {
          paths.add(full)
        }
      }
    }
    return [...paths]
  }

  function sync (state: ServerState): void {
    state.mounts.set(state.explicit ?? mountPaths() ?? (state.learnt === undefined ? ['/'] : [state.learnt]))
  }

  function syncAll (): void {
    for (const state of servers.values()) sync(state)
  }

  function attach (server: Server, attachOptions: AttachOptions = {}, learnt?: string): SockgateMiddleware {
    const explicit = attachOptions.path === undefined ? undefined : attachPaths(attachOptions.path)
    let state = servers.get(server)
    if (state === undefined) {
      const onClose = (): void => {
        const s = servers.get(server)
        if (s === undefined) return
        s.mounts.clear()
        servers.delete(server)
      }
      gateway.readProxyHeaders(server)
      state = { explicit, learnt, mounts: new ServerMounts(server, gateway), onClose }
      servers.set(server, state)
      server.once('close', onClose)
    } else if (explicit !== undefined) {
      state.explicit = explicit
    }
    sync(state)
    return middleware
  }

  /** Attach to the server of a request nobody attached us to (the first-request fallback), and say how to do it properly. */
  function attachLate (req: IncomingMessage & { baseUrl?: unknown }): void {
    const server = (req.socket as { server?: unknown }).server
    if (!isServer(server) || servers.has(server)) return
    const base = typeof req.baseUrl === 'string' ? normalizeMountPath(req.baseUrl === '' ? '/' : req.baseUrl) : undefined
    attach(server, {}, base)
    warnOnce('SOCKGATE_WARN_LATE_ATTACH', 'sockgate handled no upgrades on this server until its first HTTP request, so WebSocket ' +
      'connections before it failed. Call proxy.attach(server) right after creating the server, or start it with ' +
      "listen(app, port) from 'sockgate/express'.")
  }

  function track (app: ExpressApp): void {
    for (let a: ExpressApp | undefined = app; a !== undefined; a = a.parent) {
      let set = proxiesByApp.get(a)
      if (set === undefined) proxiesByApp.set(a, set = new Set())
      set.add(middleware)
      // When this app is itself mounted later, its new parents learn about us, and the full mount path changes.
      if (!watched.has(a) && typeof a.on === 'function') {
        watched.add(a)
        const self = a
        a.on('mount', () => {
          track(self)
          syncAll()
        })
      }
    }
  }

  const middleware = function sockgate (req: IncomingMessage, res: ServerResponse, next: NextFunction): void {
    attachLate(req)
    try {
      gateway.handleRequest(req, res, next, failuresToNext ? next : undefined)
    } catch (err) {
      // Express 5 would catch this itself and Express 4 would not: hand it on either way, so both behave the same.
      next(err)
    }
  } as SockgateMiddleware

  Object.defineProperty(middleware, 'gateway', { value: gateway, enumerable: true })
  middleware.attach = function (server: Server, attachOptions?: AttachOptions) {
    return attach(server, attachOptions)
  }
  middleware.handle = middleware
  middleware.set = function () { return middleware }
  middleware.emit = function (event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'mount') return false
    const parent = args[0] as ExpressApp
    // Express sets `mountpath` just before it emits 'mount'.
    mounts.push({ parent, path: middleware.mountpath })
    track(parent)
    syncAll()
    return true
  }
  return middleware
}

/**
 * `app.listen(...args)` that also attaches every sockgate middleware mounted
 * in `app` (or in a sub-app of it) to the new server before it takes a
 * connection. Returns the server, as `app.listen()` does.
 */
export function listen (app: ListenableApp, ...args: unknown[]): Server {
  const server = app.listen(...args)
  for (const proxy of proxiesByApp.get(app) ?? []) proxy.attach(server)
  return server
}

/** An Express middleware serving static files. */
export type AssetsMiddleware = (req: IncomingMessage, res: ServerResponse, next: NextFunction) => void

/**
 * Serve the files under `dir`, as nginx's `location /assets { alias dir; expires max; }`:
 * `app.use('/assets', assets(dir, { expires: 'max' }))`. Built on serve-static.
 *
 * Files carry an ETag and Last-Modified, and a conditional GET or HEAD
 * that still matches gets 304. The mount path without its slash
 * (`/assets?v=2`) is redirected (301) to `/assets/?v=2`, as nginx does for
 * a directory. Missing files, directories (never listed), dot-files and any
 * path that tries to leave `dir` (`..`, `%2e%2e`, `..%2f`) get 404 here and
 * go no further (not to the proxy); methods other than GET and HEAD get 405.
 * Mount it before a request logger to keep it out of the access log (nginx `access_log off`).
 */
export function assets (dir: string, options?: AssetsOptions): AssetsMiddleware {
  const root = checkRoot(dir, 'assets(dir)')
  const { expires, index } = normalizeAssetsOptions(options, 'assets(dir, options)')
  const serve = requirePeer<typeof ServeStatic>('express', 'assets()', 'serve-static')(root, {
    index: index === false ? false : [index],
    redirect: false,
    fallthrough: false,
    dotfiles: 'ignore',
    cacheControl: false,
    setHeaders (res) {
      for (const [name, value] of cacheHeaders(expires)) res.setHeader(name, value)
    },
  })
  return function sockgateAssets (req, res, next) {
    const path = pathOf(req.url ?? '/')
    if (!isSafeAssetPath(path)) {
      notFound(res)
      return
    }
    // Express shows `/assets` as `/` below the mount; only the original URL says whether the slash was there.
    const location = path === '/' && isReadMethod(req.method)
      ? slashLocation((req as { originalUrl?: string }).originalUrl ?? '/')
      : undefined
    if (location !== undefined) {
      res.writeHead(301, { location, 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(MOVED_TEXT)) })
      res.end(MOVED_TEXT)
      return
    }
    serve(req as Parameters<typeof serve>[0], res as Parameters<typeof serve>[1], (err?: unknown) => {
      const status = (err as { statusCode?: unknown } | undefined)?.statusCode
      if (typeof status === 'number' && status < 500) notFound(res)
      else next(err)
    })
  }
}
