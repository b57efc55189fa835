/**
 * A module resolve hook (registered with `module.register()` by
 * test/helpers/examples.ts) that points the README's `sockgate` imports at
 * this checkout's TypeScript sources, so the examples run without a build.
 * Other specifiers resolve as usual.
 */
import type { ResolveHook } from 'node:module'

const ROOT = new URL('../../', import.meta.url)

const SOURCES: Record<string, URL> = {
  sockgate: new URL('src/index.ts', ROOT),
  'sockgate/express': new URL('adapters/express.ts', ROOT),
  'sockgate/koa': new URL('adapters/koa.ts', ROOT),
  'sockgate/fastify': new URL('adapters/fastify.ts', ROOT),
}

// Handed on to the next hook (tsx's) rather than short-circuited, so tsx still loads the .ts file.
export const resolve: ResolveHook = (specifier, context, next) =>
  next(Object.hasOwn(SOURCES, specifier) ? SOURCES[specifier]!.href : specifier, context)
