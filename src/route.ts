import { hostName } from './host.js'
import type { HostMatcher, NormalizedRoute } from './options.js'

/** A route table compiled once: routes sorted so the first match is the best one. */
export interface RouteTable {
  match (host: string | undefined, path: string): NormalizedRoute | undefined
  /** True when some route's path takes `path`, whatever its host: where a malformed Host is refused rather than passed on. */
  claims (path: string): boolean
}

function hostMatches (m: HostMatcher, name: string): boolean {
  switch (m.kind) {
    case 'any': return true
    case 'exact': return name === m.host
    // '*.example.com' matches any depth below example.com, as nginx does, but not example.com itself.
    case 'suffix': return name.length > m.suffix.length && name.endsWith(m.suffix)
    case 'regexp': return m.re.test(name)
  }
}

/**
 * `prefix` matches `path` on segment boundaries: `/rt` matches `/rt`, `/rt/x`
 * and `/rt?x` but not `/rtx` (nginx would match `/rtx`; that surprises people
 * who mount `/assets` next to `/assets-private`). A prefix ending in `/`
 * matches everything below it.
 */
export function pathMatches (prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false
  if (path.length === prefix.length || prefix.endsWith('/')) return true
  const next = path.charCodeAt(prefix.length)
  return next === 47 /* / */ || next === 63 /* ? */
}

/** The request target with the route's prefix removed (`/rt/socket.io/?x` → `/socket.io/?x`). */
export function stripPathPrefix (prefix: string, path: string): string {
  const base = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix
  const rest = path.slice(base.length)
  return rest === '' || rest.startsWith('?') ? `/${rest}` : rest
}

/** nginx's `server_name` order: exact names, then wildcards (longest first), then regular expressions; any host last. */
const HOST_RANK: Readonly<Record<HostMatcher['kind'], number>> = { exact: 0, suffix: 1, regexp: 2, any: 3 }

function compareHosts (a: HostMatcher, b: HostMatcher): number {
  const rank = HOST_RANK[a.kind] - HOST_RANK[b.kind]
  if (rank !== 0) return rank
  return a.kind === 'suffix' && b.kind === 'suffix' ? b.suffix.length - a.suffix.length : 0
}

/**
 * Compile routes the way nginx picks a `server` and then a `location`: an
 * exact host beats a `*.` wildcard (the longer one first), which beats a
 * RegExp, which beats any host; within one host the longest path prefix
 * wins. A request whose host matches but none of that host's paths falls
 * through to the next host that matches. Sorted once (stable, so equal
 * routes keep their order), so a match is a linear scan that stops at the
 * first hit.
 */
export function compileRoutes (routes: readonly NormalizedRoute[]): RouteTable {
  const sorted = [...routes].sort((a, b) => compareHosts(a.host, b.host) || b.path.length - a.path.length)
  return {
    match (host, path) {
      const name = hostName(host)
      for (const route of sorted) {
        if (hostMatches(route.host, name) && pathMatches(route.path, path)) return route
      }
      return undefined
    },
    claims (path) {
      return sorted.some((route) => pathMatches(route.path, path))
    },
  }
}
