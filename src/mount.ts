import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { registerUpgradeHandler } from './dispatch.js'
import type { Gateway } from './gateway.js'
import { stripPathPrefix } from './route.js'

/**
 * A mount path as an upgrade prefix: leading `/`, no trailing `/` (except the
 * root), so `/rt/` and `/rt` both match `/rt`, `/rt/x` and `/rt?x`.
 * Returns undefined for a path with route syntax (`:param`, `*`, `(`), which
 * a prefix cannot express.
 */
export function normalizeMountPath (path: string): string | undefined {
  if (/[:*?()[\]]/.test(path)) return undefined
  let p = path.startsWith('/') ? path : `/${path}`
  while (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1)
  return p
}

/**
 * `url` as a framework mounted at `mountPath` hands it on, the way Express
 * strips `app.use('/rt', ...)` and koa-mount strips its prefix:
 * `/rt/socket.io/?x` → `/socket.io/?x`, `/rt` → `/`, `/rt?x` → `/?x`.
 * `url` must be under `mountPath`.
 */
export function stripMountPath (mountPath: string, url: string): string {
  return mountPath === '/' ? url : stripPathPrefix(mountPath, url)
}

/**
 * Handle `gateway`'s upgrades on `server` under `mountPath` only, with the
 * mount path taken off `req.url` before routing: the gateway then routes an
 * upgrade on the same URL it sees for HTTP when a framework mounts it at
 * that path (Express `app.use('/rt', proxy)`, koa-mount). Goes through the
 * server's one upgrade dispatcher (longest prefix first, see
 * `registerUpgradeHandler`), so several mounts and the app's own `ws` server
 * each get only their own upgrades.
 *
 * Returns a function that removes the handler again.
 */
export function mountUpgrades (server: Server, mountPath: string, gateway: Gateway): () => void {
  const prefix = normalizeMountPath(mountPath)
  if (prefix === undefined) throw new TypeError(`sockgate: mount path ${JSON.stringify(mountPath)} has route syntax; give a plain path prefix`)
  if (prefix === '/') return registerUpgradeHandler(server, '/', gateway.handleUpgrade)
  return registerUpgradeHandler(server, prefix, (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = req.url ?? '/'
    req.url = stripMountPath(prefix, url)
    if (gateway.handleUpgrade(req, socket, head)) return true
    // Not ours after all: the next handler (or the app's own listener) sees the request as it came.
    req.url = url
    return false
  })
}

/**
 * The `path` of an adapter's `attach(server, { path })` as plain prefixes.
 * Throws a TypeError naming the entry that is not one.
 */
export function attachPaths (path: string | readonly string[]): string[] {
  const paths: string[] = []
  for (const p of Array.isArray(path) ? path : [path]) {
    const prefix = typeof p === 'string' ? normalizeMountPath(p) : undefined
    if (prefix === undefined) throw new TypeError(`sockgate: attach(server, { path }) needs plain path prefixes such as '/rt' (got ${JSON.stringify(p)})`)
    paths.push(prefix)
  }
  return paths
}

/**
 * The upgrade mounts of one gateway on one server, kept in step with the
 * paths it should answer under: an adapter learns its mount paths over time
 * (Express mount events, `attach(server, { path })`, the first request) and
 * each change only adds and removes the difference.
 */
export class ServerMounts {
  private readonly detachers = new Map<string, () => void>()

  constructor (private readonly server: Server, private readonly gateway: Gateway) {
    gateway.answerConnect(server)
  }

  /** Handle upgrades under exactly `paths` from now on. */
  set (paths: Iterable<string>): void {
    const wanted = new Set(paths)
    for (const [path, detach] of this.detachers) {
      if (wanted.has(path)) continue
      detach()
      this.detachers.delete(path)
    }
    for (const path of wanted) {
      if (!this.detachers.has(path)) this.detachers.set(path, mountUpgrades(this.server, path, this.gateway))
    }
  }

  /** Remove every mount (the server closed). */
  clear (): void {
    this.set([])
  }
}

/**
 * The path prefix of the gateway route (or status page) a request for
 * `host` and `path` would go to, or undefined when none would take it.
 * Adapters of frameworks whose own routes have no order (Fastify) use it to
 * let the longest prefix win between the app's routes and the gateway's.
 */
export function matchedPrefix (gateway: Gateway, host: string | undefined, path: string): string | undefined {
  return gateway.matchedPrefix(host, path)
}
