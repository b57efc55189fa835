import type { Server, ServerResponse } from 'node:http'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

/**
 * Load an optional peer dependency (a static file server) only when the
 * feature that needs it is used, so `sockgate/express` works without
 * `serve-static` until `assets()` is called. A missing package is reported
 * with the install command.
 */
export function requirePeer<T> (adapter: string, feature: string, name: string): T {
  try {
    return require(name) as T
  } catch (err) {
    if ((err as { code?: string }).code === 'MODULE_NOT_FOUND') {
      throw new Error(`sockgate/${adapter}: ${feature} needs the '${name}' package (npm install ${name})`, { cause: err })
    }
    throw err
  }
}

/** Duck-typed check for the `http.Server` behind a request's socket (the first-request attach fallback). */
export function isServer (value: unknown): value is Server {
  return typeof value === 'object' && value !== null && typeof (value as Server).listenerCount === 'function' &&
    typeof (value as Server).emit === 'function' && typeof (value as Server).once === 'function'
}

/** The assets mounts' answer for anything they do not serve: 404, never a listing or a 403. */
export function notFound (res: ServerResponse): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const body = 'Not Found\n'
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)) })
  res.end(body)
}
