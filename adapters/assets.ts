/**
 * What the three adapters' static `/assets` helpers share: nginx's `expires`
 * headers, the request-path check, the ETag and the redirect of the mount
 * asked for without its slash. No framework is imported here, so every
 * adapter can use it without loading another framework.
 */
import { InvalidOptionError } from '../src/index.js'

/**
 * Caching of a static mount, as nginx's `expires` directive:
 * `'max'` is `expires max` (`Expires: Thu, 31 Dec 2037 23:55:55 GMT`,
 * `Cache-Control: max-age=315360000`), a number is `expires <n>s` (an
 * `Expires` n seconds ahead and `Cache-Control: max-age=<n>`), `false` is
 * `expires off` (neither header is sent).
 */
export type Expires = 'max' | number | false

/** Options of a static `/assets` mount (all three adapters). */
export interface AssetsOptions {
  /** Caching headers, as nginx's `expires`. Default: `false`. */
  expires?: Expires
  /** File served for a request ending in `/` (nginx `index`); `false` serves none. Directories are never listed. Default: `'index.html'`. */
  index?: string | false
}

/** The exact `Expires` value nginx sends for `expires max`. */
export const EXPIRES_MAX = 'Thu, 31 Dec 2037 23:55:55 GMT'
/** The `Cache-Control` max-age nginx sends for `expires max`: ten years. */
export const MAX_AGE_MAX = 315_360_000

/** Validated options with defaults, so hot paths never re-check. */
export interface NormalizedAssetsOptions {
  expires: Expires
  index: string | false
}

/** Validate `options` of a mount; throws `SOCKGATE_ERR_INVALID_OPTION` naming `path` and the rule. */
export function normalizeAssetsOptions (options: AssetsOptions | undefined, path: string): NormalizedAssetsOptions {
  const { expires = false, index = 'index.html', ...rest } = options ?? {}
  const unknown = Object.keys(rest)[0]
  if (unknown !== undefined) throw new InvalidOptionError(`${path}.${unknown}`, 'is not an option (expected one of: expires, index)')
  if (expires !== false && expires !== 'max' && !(typeof expires === 'number' && Number.isInteger(expires) && expires >= 0)) {
    throw new InvalidOptionError(`${path}.expires`, "must be 'max', a whole number of seconds >= 0, or false")
  }
  if (index !== false && (typeof index !== 'string' || index === '' || /[/\\]/.test(index))) {
    throw new InvalidOptionError(`${path}.index`, 'must be a file name or false')
  }
  return { expires, index }
}

/** Check that `dir` is a string, for the error a user can act on rather than the static server's. */
export function checkRoot (dir: unknown, path: string): string {
  if (typeof dir !== 'string' || dir === '') throw new InvalidOptionError(path, 'must be the directory to serve (a path string)')
  return dir
}

/**
 * The caching headers for `expires`, computed for a response sent at `now`
 * (ms). Empty for `false`.
 */
export function cacheHeaders (expires: Expires, now = Date.now()): Array<[string, string]> {
  if (expires === false) return []
  if (expires === 'max') return [['Expires', EXPIRES_MAX], ['Cache-Control', `max-age=${MAX_AGE_MAX}`]]
  return [['Expires', new Date(now + expires * 1000).toUTCString()], ['Cache-Control', `max-age=${expires}`]]
}

/**
 * Whether a request path below a static mount may go to the static server.
 * Refused, so the mount answers 404 (never a file outside the root, never a
 * hint of what exists): undecodable escapes, a NUL, an encoded `/` or `\`
 * (`..%2f`), a `\`, a `..` segment in any spelling (`%2e%2e`), and
 * dot-files. The static servers check too; this makes the answer the same
 * 404 on every adapter.
 */
export function isSafeAssetPath (rawPath: string): boolean {
  if (/%(?:2f|5c|00)/i.test(rawPath)) return false
  let path: string
  try {
    path = decodeURIComponent(rawPath)
  } catch {
    return false
  }
  if (path.includes('\0') || path.includes('\\')) return false
  return path.split('/').every((segment) => !segment.startsWith('.'))
}

/** The path part of a request target (`/a/b?x` → `/a/b`). */
export function pathOf (url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}

/** The rest of `path` below the mount prefix `mount` (`/assets/a.js` → `/a.js`), or undefined when `path` is not below it. */
export function pathBelow (mount: string, path: string): string | undefined {
  if (mount === '/') return path
  if (path === mount) return ''
  return path.startsWith(mount + '/') ? path.slice(mount.length) : undefined
}

/** The methods a static mount answers; the others get 405 with this as `Allow`. */
export const ALLOWED_METHODS = 'GET, HEAD'

/** Whether a static mount answers `method` (GET, HEAD) rather than 405. */
export function isReadMethod (method: string | undefined): boolean {
  return method === 'GET' || method === 'HEAD'
}

/**
 * A file's weak ETag from its size and modification time, written as
 * serve-static and @fastify/static write theirs (`W/"<size hex>-<mtime ms hex>"`),
 * so one file has the same validator on every adapter. Weak because the
 * stats say when the bytes changed, not what they are (RFC 9110 §8.8.1).
 */
export function fileEtag (stats: { size: number, mtime: Date }): string {
  return `W/"${stats.size.toString(16)}-${stats.mtime.getTime().toString(16)}"`
}

/**
 * Where nginx sends a request for a directory named without its trailing
 * slash: the same target with the slash, query kept (`/assets?v=2` →
 * `/assets/?v=2`), so relative links in its index resolve below it.
 * `url` must be the target the client sent, before a framework took a
 * mount path off it. Undefined when the path already ends in `/`.
 */
export function slashLocation (url: string): string | undefined {
  const path = pathOf(url)
  if (path.endsWith('/')) return undefined
  // One leading slash: `//evil.test/assets` would otherwise be a protocol-relative redirect to another host.
  return `${path.replace(/^[/\\]+/, '/')}/${url.slice(path.length)}`
}

/** Body (text/plain) of the 301 to {@link slashLocation}, the same on every adapter. */
export const MOVED_TEXT = 'Moved Permanently\n'
