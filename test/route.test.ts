import { test } from 'node:test'
import assert from 'node:assert/strict'
import { normalizeOptions } from '../src/options.js'
import { hostName } from '../src/host.js'
import { compileRoutes, pathMatches, stripPathPrefix } from '../src/route.js'
import type { RouteOptions } from '../src/types.js'

/**
 * Compiles `routes` through the real option normalisation (pools a, b, c and
 * d exist) and returns a lookup that names the chosen pool.
 */
function router (routes: RouteOptions[]): (host: string | undefined, path: string) => string | undefined {
  const upstreams = Object.fromEntries(['a', 'b', 'c', 'd'].map((name, i) => [name, { servers: [`http://127.0.0.1:${5001 + i}`] }]))
  const table = compileRoutes(normalizeOptions({ upstreams, routes }).routes)
  return (host, path) => table.match(host, path)?.upstream
}

// Hosts

test('route: an exact host matches that host in any letter case', () => {
  const route = router([{ host: 'chat.example.com', upstream: 'a' }])
  assert.equal(route('chat.example.com', '/'), 'a')
  assert.equal(route('Chat.EXAMPLE.com', '/'), 'a')
  assert.equal(route('www.example.com', '/'), undefined)
  assert.equal(route('example.com', '/'), undefined)
})

test('route: a route host given in capitals matches the lower-case Host', () => {
  const route = router([{ host: 'Chat.Example.COM', upstream: 'a' }])
  assert.equal(route('chat.example.com', '/'), 'a')
})

test('route: a Host header with a port matches the route host without it', () => {
  const route = router([{ host: 'chat.example.com', upstream: 'a' }])
  assert.equal(route('chat.example.com:8443', '/'), 'a')
})

test('route: a bracketed IPv6 Host with a port matches the bracketed address', () => {
  const route = router([{ host: '[::1]', upstream: 'a' }])
  assert.equal(route('[::1]:8080', '/'), 'a')
  assert.equal(route('[::1]', '/'), 'a')
})

test('route: *.example.com matches subdomains of any depth', () => {
  const route = router([{ host: '*.example.com', upstream: 'a' }])
  assert.equal(route('chat.example.com', '/'), 'a')
  assert.equal(route('eu.west.chat.example.com:8080', '/'), 'a')
})

test('route: *.example.com does not match the apex or a look-alike domain', () => {
  const route = router([{ host: '*.example.com', upstream: 'a' }])
  assert.equal(route('example.com', '/'), undefined)
  assert.equal(route('badexample.com', '/'), undefined)
  assert.equal(route('example.com.evil.test', '/'), undefined)
})

test('route: a RegExp host is tested against the lower-case host name without its port', () => {
  const route = router([{ host: /^(eu|us)\.chat\.example\.com$/, upstream: 'a' }])
  assert.equal(route('EU.chat.example.com:8080', '/'), 'a')
  assert.equal(route('us.chat.example.com', '/'), 'a')
  assert.equal(route('ap.chat.example.com', '/'), undefined)
})

test('route: a RegExp host with the g flag matches on every request', () => {
  const route = router([{ host: /chat\.example\.com/g, upstream: 'a' }])
  const results = Array.from({ length: 4 }, () => route('chat.example.com', '/'))
  assert.deepEqual(results, ['a', 'a', 'a', 'a'])
})

test('route: a route without host matches any host and a missing Host', () => {
  const route = router([{ upstream: 'a' }])
  assert.equal(route('anything.test', '/'), 'a')
  assert.equal(route(undefined, '/'), 'a')
})

test('route: a request without Host matches no host-specific route', () => {
  const route = router([{ host: 'chat.example.com', upstream: 'a' }])
  assert.equal(route(undefined, '/'), undefined)
})

// Paths

test('route: the longest matching path prefix wins whatever the order of the routes', () => {
  const route = router([
    { path: '/', upstream: 'a' },
    { path: '/api/v2', upstream: 'c' },
    { path: '/api', upstream: 'b' },
  ])
  assert.equal(route('x', '/'), 'a')
  assert.equal(route('x', '/about'), 'a')
  assert.equal(route('x', '/api/users'), 'b')
  assert.equal(route('x', '/api/v2/users'), 'c')
  assert.equal(route('x', '/api/v3'), 'b')
})

test('route: /rt does not match /rtx', () => {
  const route = router([{ path: '/rt', upstream: 'a' }])
  assert.equal(route('x', '/rtx'), undefined)
  assert.equal(route('x', '/rt-private/x'), undefined)
})

test('route: /rt matches /rt itself, paths below it and its query', () => {
  const route = router([{ path: '/rt', upstream: 'a' }])
  assert.equal(route('x', '/rt'), 'a')
  assert.equal(route('x', '/rt/socket.io/?EIO=4'), 'a')
  assert.equal(route('x', '/rt?x=1'), 'a')
})

test('route: a prefix ending in / matches only below it', () => {
  assert.equal(pathMatches('/rt/', '/rt/x'), true)
  assert.equal(pathMatches('/rt/', '/rt/'), true)
  assert.equal(pathMatches('/rt/', '/rt'), false)
})

test('route: the default path / matches every path', () => {
  const route = router([{ upstream: 'a' }])
  assert.equal(route('x', '/'), 'a')
  assert.equal(route('x', '/socket.io/?EIO=4&transport=polling'), 'a')
})

test('route: no match gives undefined', () => {
  const route = router([{ path: '/api', upstream: 'a' }])
  assert.equal(route('x', '/'), undefined)
})

// Host against path

test('route: a host-specific route beats an any-host route with a longer prefix', () => {
  const route = router([
    { path: '/socket.io', upstream: 'a' },
    { host: 'chat.example.com', path: '/', upstream: 'b' },
  ])
  assert.equal(route('chat.example.com', '/socket.io/?EIO=4'), 'b')
  assert.equal(route('other.example.com', '/socket.io/?EIO=4'), 'a')
})

test('route: a request whose host matches but none of its paths falls through to any-host routes', () => {
  const route = router([
    { host: 'chat.example.com', path: '/chat', upstream: 'a' },
    { path: '/', upstream: 'b' },
  ])
  assert.equal(route('chat.example.com', '/chat/x'), 'a')
  assert.equal(route('chat.example.com', '/assets/app.js'), 'b')
})

test('route: an exact host beats a wildcard, which beats a RegExp, as nginx server_name does', () => {
  const route = router([
    { host: /example\.com$/, path: '/api', upstream: 'c' },
    { host: '*.example.com', path: '/api', upstream: 'b' },
    { host: 'chat.example.com', path: '/', upstream: 'a' },
  ])
  assert.equal(route('chat.example.com', '/api/x'), 'a')
  assert.equal(route('www.example.com', '/api/x'), 'b')
  assert.equal(route('example.com', '/api/x'), 'c')
})

test('route: the longer of two matching wildcards wins', () => {
  const route = router([
    { host: '*.example.com', upstream: 'a' },
    { host: '*.chat.example.com', upstream: 'b' },
  ])
  assert.equal(route('eu.chat.example.com', '/'), 'b')
  assert.equal(route('www.example.com', '/'), 'a')
})

test('route: of two routes with the same host and path the first listed wins', () => {
  const route = router([
    { path: '/api', upstream: 'a' },
    { path: '/api', upstream: 'b' },
  ])
  assert.equal(route('x', '/api'), 'a')
})

// stripPrefix and host names

test('route: stripPrefix removes the prefix and keeps the rest of the target', () => {
  assert.equal(stripPathPrefix('/rt', '/rt/socket.io/?EIO=4'), '/socket.io/?EIO=4')
  assert.equal(stripPathPrefix('/rt/', '/rt/socket.io/'), '/socket.io/')
  assert.equal(stripPathPrefix('/', '/socket.io/'), '/socket.io/')
})

test('route: stripPrefix of the whole path leaves / and keeps the query', () => {
  assert.equal(stripPathPrefix('/rt', '/rt'), '/')
  assert.equal(stripPathPrefix('/rt', '/rt?x=1'), '/?x=1')
})

test('route: stripPrefix is kept on the normalized route', () => {
  const { routes } = normalizeOptions({ target: 'http://127.0.0.1:5001', routes: [{ path: '/rt', upstream: 'default', stripPrefix: true }] })
  assert.equal(routes[0]?.stripPrefix, true)
})

test('route: hostName lower-cases the Host header and drops its port', () => {
  assert.equal(hostName('Chat.Example.COM:8080'), 'chat.example.com')
  assert.equal(hostName('chat.example.com'), 'chat.example.com')
  assert.equal(hostName('[::1]:8080'), '[::1]')
  assert.equal(hostName(undefined), '')
})
