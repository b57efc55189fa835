/**
 * `sockgate/fastify`: the gateway as a Fastify 5 plugin, with static
 * `/assets` mounts through @fastify/static.
 *
 * ```ts
 * await app.register(sockgate, {
 *   target: ['http://127.0.0.1:5001', 'http://127.0.0.1:5002'],
 *   assets: { '/assets': { root: dir, expires: 'max' } },
 * })
 * await app.listen({ port: 80 })
 * ```
 *
 * The plugin attaches to `app.server` for upgrades as it registers, hands
 * the requests its routes match to the gateway from an `onRequest` hook
 * (before any body parsing, so the body reaches the upstream untouched),
 * decorates `app.sockgate` with the gateway, and closes it when the app
 * closes.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, HTTPMethods, LogLevel } from 'fastify'
import fp from 'fastify-plugin'
import {
  createGateway, Gateway, InvalidOptionError, matchedPrefix, normalizeMountPath, type GatewayOptions,
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
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway of the sockgate plugin (status, events, pools). */
    sockgate: Gateway
  }
}

/** Default of `closeDrain`. */
export const DEFAULT_CLOSE_DRAIN = 10_000

/** Options Fastify itself reads from `register()`; they are not gateway options. */
const REGISTER_OPTIONS = new Set(['prefix', 'logLevel', 'logSerializers'])

/** A static mount, checked. */
interface AssetsMount {
  prefix: string
  root: string
  options: ReturnType<typeof normalizeAssetsOptions>
  logLevel: LogLevel | undefined
}

const plugin: FastifyPluginAsync<SockgateFastifyOptions> = async function sockgate (app: FastifyInstance, opts: SockgateFastifyOptions) {
  const { gateway: given, closeDrain = DEFAULT_CLOSE_DRAIN, assets = {}, ...rest } = opts
  const gatewayOptions: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(rest)) if (!REGISTER_OPTIONS.has(key)) gatewayOptions[key] = value
  if (!Number.isInteger(closeDrain) || closeDrain < 0) throw new InvalidOptionError('closeDrain', 'must be an integer >= 0 (ms)')
  let gateway: Gateway
  if (given === undefined) {
    gateway = createGateway(gatewayOptions as GatewayOptions)
  } else {
    if (!(given instanceof Gateway)) throw new InvalidOptionError('gateway', 'must be a gateway made by createGateway()')
    const extra = Object.keys(gatewayOptions)
    if (extra.length > 0) throw new InvalidOptionError(extra[0]!, 'cannot be combined with gateway: configure the gateway you pass instead')
    gateway = given
  }
  const mounts = checkAssets(assets)

  app.decorate('sockgate', gateway)
  // At registration, not on the first request: upgrades can arrive before any HTTP request does.
  gateway.attach(app.server)

  app.addHook('onRequest', function sockgateOnRequest (request, reply, done) {
    const raw = request.raw
    const path = pathOf(raw.url ?? '/')
    const prefix = matchedPrefix(gateway, raw.headers.host, path)
    if (prefix === undefined || appPrefixLength(request, path, mounts) >= prefix.length) {
      done()
      return
    }
    let passed = false
    let hijacked = false
    gateway.handleRequest(raw, reply.raw, (err?: unknown) => {
      passed = true
      if (!hijacked) done(err as Error | undefined)
      else notFound(reply.raw) // The core decides synchronously; a late "no route" must still get an answer.
    })
    if (passed) return
    hijacked = true
    reply.hijack()
    done()
  })

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
  })
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
 * gateway options (or `{ gateway }`), plus `assets` and `closeDrain`.
 */
const sockgatePlugin = fp(plugin, { fastify: '5.x', name: 'sockgate' })
export default sockgatePlugin
export { sockgatePlugin as sockgate }
