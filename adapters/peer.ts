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
