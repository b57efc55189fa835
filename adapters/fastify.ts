/**
 * `sockgate/fastify`: the gateway as a Fastify 5 plugin, with static
 * `/assets` mounts through @fastify/static.
 *
 * ```ts
 * await app.register(sockgate, {
 *   target: ['http://127.0.0.1:5001', 'http://127.0.0.1:5002'],
 *   assets: { '/assets': { root: dir, expires: 'max' } },
 * })
 * await app.register(sockgate, { prefix: '/game', target: 'http://127.0.0.1:6001' })
 * await app.listen({ port: 80 })
 * ```
 *
 * Each registration takes upgrades off `app.server` under its prefix as it
 * registers and sends them through the app's routing, so the app's hooks
 * run for WebSockets as for HTTP. Its `onRequest` hook (before any body
 * parsing, so the body reaches the upstream untouched) hands what it takes
 * to the gateway. It decorates `app.sockgate`, logs through `app.log`, and
 * closes the gateway when the app closes.
 */
import { type IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type {
  FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, HookHandlerDoneFunction, HTTPMethods, LogLevel,
} from 'fastify'
import fp from 'fastify-plugin'
import {
  afterEarlierAnswers, ConnectProtocolError, createGateway, Gateway, InvalidOptionError, matchedPrefix, normalizeMountPath, registerUpgradeHandler, stripMountPath,
  type GatewayOptions,
} from '../src/index.js'
import {
  ALLOWED_METHODS, cacheHeaders, checkRoot, isReadMethod, isSafeAssetPath, MOVED_TEXT, normalizeAssetsOptions, pathBelow, pathOf,
  slashLocation, type AssetsOptions,
} from './assets.js'
import { notFound } from './common.js'

export type { AssetsOptions, Expires } from './assets.js'

/** One static mount of the plugin's `assets` option. */
export interface FastifyAssetsMount extends AssetsOptions {
  /** The directory to serve. */
  root: string
  /** Log level of the mount's routes; `'silent'` keeps them out of the access log (nginx `access_log off`). Default: the app's. */
  logLevel?: LogLevel
}

/** Options of the plugin: gateway options, or `{ gateway }`, plus the plugin's own. */
export interface SockgateFastifyOptions extends GatewayOptions {
  /** A gateway already built, used in place of building one from the options (which must then be absent). */
  gateway?: Gateway
  /** Milliseconds open tunnels may keep running when the app closes, before they are ended. Default: `10000`. */
  closeDrain?: number
  /** Static mounts: path prefix → directory, or `{ root, expires, index, logLevel }`. Default: none. */
  assets?: Record<string, string | FastifyAssetsMount>
  /**
   * Proxy only requests and upgrades under this path prefix (after the
   * prefix of the context the plugin is registered in); the rest is the
   * app's. Default: `'/'` (everything the gateway's routes match).
   */
  prefix?: string
  /**
   * Take the prefix off the path before the gateway routes and forwards it
   * (`/chat/socket.io/?EIO=4` → `/socket.io/?EIO=4`), as Express and Koa
   * mounts and @fastify/http-proxy do. Default: `true`.
   */
  stripPrefix?: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * The gateway of the sockgate plugin (status, events, pools): of the
     * first registration in this encapsulation context, else of the nearest
     * enclosing context that has one.
     */
    sockgate: Gateway
  }
}

/** Default of `closeDrain`. */
export const DEFAULT_CLOSE_DRAIN = 10_000

/** Default of `stripPrefix`. */
export const DEFAULT_STRIP_PREFIX = true

/** Options Fastify itself reads from `register()`; they are not gateway options. */
const REGISTER_OPTIONS = new Set(['logLevel', 'logSerializers'])

/** A static mount, checked. */
interface AssetsMount {
  prefix: string
  root: string
  options: ReturnType<typeof normalizeAssetsOptions>
  logLevel: LogLevel | undefined
}

/** An upgrade sent through the app's routing, waiting for the hook of the registration that took it. */
interface PendingUpgrade {
  socket: Duplex
  head: Buffer
  /** The registration that took it off the server. */
  owner: object
}

const pendingUpgrades = new WeakMap<IncomingMessage, PendingUpgrade>()

/** The gateway of the first registration made in each encapsulation context. */
const contextGateways = new WeakMap<object, Gateway>()

const plugin: FastifyPluginAsync<SockgateFastifyOptions> = async function sockgate (app: FastifyInstance, opts: SockgateFastifyOptions) {
  const {
    gateway: given, closeDrain = DEFAULT_CLOSE_DRAIN, assets = {}, prefix = '/', stripPrefix = DEFAULT_STRIP_PREFIX, ...rest
  } = opts
  const gatewayOptions: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(rest)) if (!REGISTER_OPTIONS.has(key)) gatewayOptions[key] = value
  if (!Number.isInteger(closeDrain) || closeDrain < 0) throw new InvalidOptionError('closeDrain', 'must be an integer >= 0 (ms)')
  if (typeof stripPrefix !== 'boolean') throw new InvalidOptionError('stripPrefix', 'must be true or false')
  const scope = scopeOf(app.prefix, prefix)
  let gateway: Gateway
  if (given === undefined) {
    // The gateway's records go where the app's own go, unless the options name another logger.
    gateway = createGateway({ ...gatewayOptions, logger: gatewayOptions.logger ?? app.log } as GatewayOptions)
  } else {
    if (!(given instanceof Gateway)) throw new InvalidOptionError('gateway', 'must be a gateway made by createGateway()')
    const extra = Object.keys(gatewayOptions)
    if (extra.length > 0) throw new InvalidOptionError(extra[0]!, 'cannot be combined with gateway: configure the gateway you pass instead')
    gateway = given
  }
  const mounts = checkAssets(assets)
  decorateGateway(app, gateway)

  const self = {}
  /** A request target as the gateway routes and forwards it. */
  const targetOf = (url: string): string => stripPrefix ? stripMountPath(scope.full, url) : url

  // At registration, not on the first request: upgrades can arrive before any HTTP request does.
  gateway.answerConnect(app.server)
  const detachUpgrades = registerUpgradeHandler(app.server, scope.full, (req, socket, head) => {
    if (matchedPrefix(gateway, req.headers.host, pathOf(targetOf(req.url ?? '/'))) === undefined) return false
    routeUpgrade(app, req, socket, head, self)
    return true
  })

  // Over HTTP/2 a WebSocket is a stream of the page's own connection (RFC 8441), which Fastify never routes: the
  // gateway takes it, when the app's server offers it (`https.settings.enableConnectProtocol`). Not under a prefix.
  if (app.initialConfig.http2 === true && scope.full === '/') {
    try {
      gateway.attachHttp2(app.server as unknown as Parameters<Gateway['attachHttp2']>[0])
    } catch (err) {
      if (!(err instanceof ConnectProtocolError)) throw err
    }
  }

  function handOff (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const raw = request.raw
    // Fastify's `request.headers = {...}` adds headers beside raw.headers: the upstream gets what request.headers shows.
    const headers = request.headers
    if (headers !== raw.headers) raw.headers = headers
    const url = raw.url ?? '/'
    raw.url = targetOf(url)
    const upgrade = pendingUpgrades.get(raw)
    if (upgrade !== undefined) {
      reply.hijack()
      if (!gateway.handleUpgrade(raw, upgrade.socket, upgrade.head)) notFound(reply.raw)
      done()
      return
    }
    let passed = false
    let hijacked = false
    gateway.handleRequest(raw, reply.raw, (err?: unknown) => {
      passed = true
      if (hijacked) {
        notFound(reply.raw) // The core decides synchronously; a late "no route" must still get an answer.
        return
      }
      raw.url = url
      done(err as Error | undefined)
    })
    if (passed) return
    hijacked = true
    reply.hijack()
    done()
  }

  function sockgateOnRequest (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const upgrade = pendingUpgrades.get(request.raw)
    const ours = upgrade === undefined ? scope.full !== '/' || !appOwns(request, gateway, mounts) : upgrade.owner === self
    if (ours) handOff(request, reply, done)
    else done()
  }

  if (scope.full === '/') {
    app.addHook('onRequest', sockgateOnRequest)
  } else {
    // Under a prefix, routes of its own: Fastify prefixes them like any route of this context, runs this
    // context's hooks for them (a context's hooks never see its 404s), and the app's more specific
    // routes under the prefix win over them. The handler runs only for what the gateway's routes leave.
    for (const url of [scope.own, scope.own === '/' ? '/*' : `${scope.own}/*`]) {
      app.all(url, { onRequest: sockgateOnRequest }, function sockgateNotProxied (_request, reply) { reply.callNotFound() })
    }
  }

  for (const mount of mounts) await registerAssets(app, mount)

  // Fastify closes its server before it runs onClose hooks, and server.close() waits for every
  // connection, tunnels included: so start draining them first, as @fastify/websocket does.
  let closing: Promise<void> | undefined
  app.addHook('preClose', function sockgatePreClose (done) {
    closing ??= gateway.close({ drain: closeDrain })
    done()
  })
  app.addHook('onClose', async function sockgateOnClose () {
    closing ??= gateway.close({ drain: closeDrain })
    await closing
    detachUpgrades()
  })
}

/**
 * A registration's prefix relative to its context (`own`) and from the
 * root (`full`), both plain prefixes: `/v1` + `/game` → `/v1/game`.
 */
function scopeOf (contextPrefix: string, prefix: unknown): { own: string, full: string } {
  const own = typeof prefix === 'string' && prefix.startsWith('/') ? normalizeMountPath(prefix) : undefined
  if (own === undefined) throw new InvalidOptionError('prefix', "must be a plain path prefix such as '/chat'")
  const context = normalizeMountPath(contextPrefix)
  if (context === undefined) throw new InvalidOptionError('prefix', `cannot scope upgrades under this context's prefix ${JSON.stringify(contextPrefix)}, which has route syntax`)
  return { own, full: context === '/' ? own : own === '/' ? context : context + own }
}

/**
 * Decorate `app.sockgate` once along a chain of contexts, as a getter that
 * finds the first registration's gateway in the context it is read on or
 * the nearest enclosing one: several registrations never clash, and a child
 * context that registers its own sees its own.
 */
function decorateGateway (app: FastifyInstance, gateway: Gateway): void {
  if (!contextGateways.has(app)) contextGateways.set(app, gateway)
  if (app.hasDecorator('sockgate')) return
  app.decorate('sockgate', {
    getter (this: FastifyInstance) {
      // A child context is Object.create(parent), so the walk reaches the context that registered.
      for (let context: object = this; ; context = Object.getPrototypeOf(context) as object) {
        const found = contextGateways.get(context)
        if (found !== undefined) return found
      }
    },
  })
}

/**
 * Send an upgrade through the app's routing, as @fastify/websocket does,
 * so the app's hooks run for it (an auth hook may edit its headers or answer
 * it); the hook of the registration that took it then hands it to the
 * gateway.
 */
function routeUpgrade (app: FastifyInstance, req: IncomingMessage, socket: Duplex, head: Buffer, owner: object): void {
  // Node takes its own error listener off an upgraded socket: a client leaving while hooks run must not throw.
  socket.on('error', () => socket.destroy())
  // Pipelined behind a request: the connection is that answer's until it is out (and whatever follows must come after it).
  afterEarlierAnswers(socket, req, () => {
    pendingUpgrades.set(req, { socket, head, owner })
    const res = new ServerResponse(req)
    // An answer of the app's own (a hook's 401, a route of its own) ends the connection: its client asked to switch protocols.
    res.shouldKeepAlive = false
    res.assignSocket(socket as Socket)
    res.once('finish', () => {
      socket.once('finish', () => socket.destroy())
      socket.end()
    })
    app.routing(req, res)
  })
}

/** Whether the app keeps an HTTP request a registration without prefix could take: see {@link appPrefixLength}. */
function appOwns (request: FastifyRequest, gateway: Gateway, mounts: readonly AssetsMount[]): boolean {
  const path = pathOf(request.raw.url ?? '/')
  // An HTTP/2 request names its host in `:authority` (RFC 9113 §8.3.1).
  const headers = request.raw.headers
  const prefix = matchedPrefix(gateway, headers.host ?? (headers[':authority'] as string | undefined), path)
  return prefix === undefined || appPrefixLength(request, path, mounts) >= prefix.length
}

/**
 * How long a prefix of the app's own owns this request: a static mount it is
 * under, or the route Fastify matched (its text before the first `:` or `*`;
 * a route without either matches only itself and always wins). -1 when the
 * app has nothing for it. The gateway gets a request only with a longer
 * prefix, as the longest `location` wins in nginx: an app's `/*` fallback
 * does not shadow the gateway's `/socket.io/`, and the gateway's `/` does
 * not shadow the app's `/users/:id` or `/assets`.
 */
function appPrefixLength (request: FastifyRequest, path: string, mounts: readonly AssetsMount[]): number {
  let length = -1
  for (const m of mounts) if (m.prefix.length > length && pathBelow(m.prefix, path) !== undefined) length = m.prefix.length
  if (request.is404) return length
  const url = request.routeOptions.url
  if (url === undefined) return length
  const cut = url.search(/[:*]/)
  return cut === -1 ? Infinity : Math.max(length, cut)
}

function checkAssets (assets: SockgateFastifyOptions['assets']): AssetsMount[] {
  if (typeof assets !== 'object' || assets === null) throw new InvalidOptionError('assets', "must map path prefixes to directories: { '/assets': dir }")
  const mounts: AssetsMount[] = []
  for (const [key, spec] of Object.entries(assets)) {
    const path = `assets[${JSON.stringify(key)}]`
    const prefix = normalizeMountPath(key)
    if (prefix === undefined || !key.startsWith('/')) throw new InvalidOptionError(path, "must be keyed by a plain path prefix such as '/assets'")
    if (typeof spec === 'string') {
      mounts.push({ prefix, root: checkRoot(spec, path), options: normalizeAssetsOptions(undefined, path), logLevel: undefined })
      continue
    }
    if (typeof spec !== 'object' || spec === null) throw new InvalidOptionError(path, 'must be a directory or { root, expires, index, logLevel }')
    const { root, logLevel, ...assetsOptions } = spec
    mounts.push({ prefix, root: checkRoot(root, `${path}.root`), options: normalizeAssetsOptions(assetsOptions, path), logLevel })
  }
  return mounts
}

async function loadFastifyStatic (): Promise<FastifyPluginAsync<Record<string, unknown>>> {
  try {
    const mod = await import('@fastify/static') as unknown as { default: FastifyPluginAsync<Record<string, unknown>> }
    return mod.default
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_MODULE_NOT_FOUND') {
      throw new Error("sockgate/fastify: the assets option needs the '@fastify/static' package (npm install @fastify/static)", { cause: err })
    }
    throw err
  }
}

/**
 * One static mount in its own encapsulated context: its path check stays
 * with its routes, and `logLevel` applies to them only.
 */
async function registerAssets (app: FastifyInstance, mount: AssetsMount): Promise<void> {
  const fastifyStatic = await loadFastifyStatic()
  const { expires, index } = mount.options
  const notAllowed = (_request: FastifyRequest, reply: FastifyReply): void => {
    reply.code(405).header('allow', ALLOWED_METHODS).send()
  }
  app.register(async function sockgateAssets (child) {
    child.addHook('onRequest', function sockgateAssetsPath (request, reply, done) {
      const rest = pathBelow(mount.prefix, pathOf(request.raw.url ?? '/'))
      // The same 404 for `..`, `%2e%2e`, `..%2f` and dot-files on every adapter: the app's own not-found answer.
      if (rest !== undefined && !isSafeAssetPath(rest)) reply.callNotFound()
      else done()
    })
    await child.register(fastifyStatic, {
      root: mount.root,
      prefix: mount.prefix,
      decorateReply: false,
      index: index === false ? false : [index],
      redirect: false,
      list: false,
      dotfiles: 'ignore',
      cacheControl: false,
      // @fastify/static 10 passes the reply, 8 and 9 passed the raw response.
      setHeaders (target: { header?: (name: string, value: string) => unknown, setHeader?: (name: string, value: string) => unknown }) {
        for (const [name, value] of cacheHeaders(expires)) {
          if (typeof target.header === 'function') target.header(name, value)
          else target.setHeader?.(name, value)
        }
      },
    })
    // @fastify/static routes GET and HEAD only: the other methods get the 405 of Express and Koa, not the app's 404.
    const otherMethods = child.supportedMethods.filter((method) => !isReadMethod(method)) as HTTPMethods[]
    child.route({ method: otherMethods, url: mount.prefix === '/' ? '/*' : `${mount.prefix}/*`, handler: notAllowed })
    if (mount.prefix === '/') return
    // The prefix without its slash, which @fastify/static (with redirect off) leaves to the app's 404: nginx's 301 to the slash.
    child.all(mount.prefix, function sockgateAssetsSlash (request, reply) {
      const location = slashLocation(request.raw.url ?? '/')
      if (!isReadMethod(request.raw.method)) notAllowed(request, reply)
      // With ignoreTrailingSlash this route gets `/assets/` too, which must not redirect to itself.
      else if (location === undefined) reply.callNotFound()
      else reply.code(301).header('location', location).type('text/plain; charset=utf-8').send(MOVED_TEXT)
    })
  }, mount.logLevel === undefined ? {} : { logLevel: mount.logLevel })
}

/**
 * The sockgate Fastify plugin: `app.register(sockgate, options)`. Options are
 * gateway options (or `{ gateway }`), plus `prefix`, `stripPrefix`, `assets`
 * and `closeDrain`. Register it once per prefix to send each to its own
 * gateway.
 */
const sockgatePlugin = fp(plugin, { fastify: '5.x', name: 'sockgate' })
export default sockgatePlugin
export { sockgatePlugin as sockgate }
