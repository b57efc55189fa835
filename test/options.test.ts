import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createGateway, InvalidOptionError, type GatewayOptions } from '../src/index.js'
import {
  DEFAULT_BODY_LIMIT, DEFAULT_POOL, DEFAULT_TIMEOUTS, normalizeOptions,
} from '../src/options.js'

const A = 'http://127.0.0.1:5001'
const B = 'http://127.0.0.1:5002'

/** A valid pool named socket_nodes, with `extra` merged into it. */
function pool (extra: Record<string, unknown> = {}): GatewayOptions {
  return { upstreams: { socket_nodes: { servers: [A, B], ...extra } } } as GatewayOptions
}

/** Asserts that createGateway() refuses `options` with an InvalidOptionError whose message starts with `path`. */
function assertRefused (options: unknown, path: string): InvalidOptionError {
  let caught: unknown
  try {
    createGateway(options as GatewayOptions)
  } catch (err) {
    caught = err
  }
  assert.ok(caught instanceof InvalidOptionError, `expected an InvalidOptionError, got ${String(caught)}`)
  assert.equal(caught.code, 'SOCKGATE_ERR_INVALID_OPTION')
  assert.ok(caught.message.startsWith(`${path} `), `the message does not start with "${path} ": ${caught.message}`)
  return caught
}

// Every rule: [what is wrong, the options, the path the error must name]
const REFUSED: Array<[string, unknown, string]> = [
  // Top level
  ['options that are not an object', null, 'options'],
  ['an unknown top-level option', { target: A, proxyPass: A }, 'proxyPass'],
  ['target together with upstreams', { target: A, ...pool() }, 'target'],
  ['neither target nor upstreams', {}, 'upstreams'],
  ['an empty upstreams object', { upstreams: {} }, 'upstreams'],
  // Timeouts and limits
  ['timeouts that are not an object', { target: A, timeouts: 5000 }, 'timeouts'],
  ['an unknown timeout', { target: A, timeouts: { read: 5000 } }, 'timeouts.read'],
  ['a connect timeout of 0', { target: A, timeouts: { connect: 0 } }, 'timeouts.connect'],
  ['a handshake timeout given as a string', { target: A, timeouts: { handshake: '100' } }, 'timeouts.handshake'],
  ['a request timeout that is not an integer', { target: A, timeouts: { request: 1.5 } }, 'timeouts.request'],
  ['a negative idle timeout', { target: A, timeouts: { idle: -1 } }, 'timeouts.idle'],
  ['a send timeout of 0', { target: A, timeouts: { send: 0 } }, 'timeouts.send'],
  ['an idle timeout longer than a Node timer allows', { target: A, timeouts: { idle: 2 ** 31 } }, 'timeouts.idle'],
  ['a max lifetime under a second', { target: A, timeouts: { maxLifetime: 999 } }, 'timeouts.maxLifetime'],
  ['a negative max lifetime', { target: A, timeouts: { maxLifetime: -1 } }, 'timeouts.maxLifetime'],
  ['a max lifetime that is not an integer', { target: A, timeouts: { maxLifetime: 60_000.5 } }, 'timeouts.maxLifetime'],
  ['a max lifetime longer than a Node timer allows', { target: A, timeouts: { maxLifetime: 2 ** 31 } }, 'timeouts.maxLifetime'],
  ['limits that are not an object', { target: A, limits: 1024 }, 'limits'],
  ['an unknown limit', { target: A, limits: { headers: 8192 } }, 'limits.headers'],
  ['a negative body limit', { target: A, limits: { body: -1 } }, 'limits.body'],
  ['a body limit of Infinity', { target: A, limits: { body: Infinity } }, 'limits.body'],
  ['perClient that is not an object', { target: A, limits: { perClient: 10 } }, 'limits.perClient'],
  ['a perClient with no limit in it', { target: A, limits: { perClient: { maxClients: 10 } } }, 'limits.perClient'],
  ['an unknown perClient limit', { target: A, limits: { perClient: { rate: 10 } } }, 'limits.perClient.rate'],
  ['a perClient connections of 0', { target: A, limits: { perClient: { connections: 0 } } }, 'limits.perClient.connections'],
  ['a perClient requestsPerSecond of 0', { target: A, limits: { perClient: { requestsPerSecond: 0 } } }, 'limits.perClient.requestsPerSecond'],
  ['a perClient requestsPerSecond of Infinity', { target: A, limits: { perClient: { requestsPerSecond: Infinity } } }, 'limits.perClient.requestsPerSecond'],
  ['a perClient burst without requestsPerSecond', { target: A, limits: { perClient: { connections: 2, burst: 5 } } }, 'limits.perClient.burst'],
  ['a negative perClient burst', { target: A, limits: { perClient: { requestsPerSecond: 5, burst: -1 } } }, 'limits.perClient.burst'],
  ['a fractional perClient upgradesPerMinute', { target: A, limits: { perClient: { upgradesPerMinute: 1.5 } } }, 'limits.perClient.upgradesPerMinute'],
  ['a perClient maxClients of 0', { target: A, limits: { perClient: { connections: 2, maxClients: 0 } } }, 'limits.perClient.maxClients'],
  ['origins that are not a list', { target: A, origins: 'https://app.example.com' }, 'origins'],
  ['an origin with a path', { target: A, origins: ['https://app.example.com/chat'] }, 'origins[0]'],
  ['requireOrigin without origins', { target: A, requireOrigin: true }, 'requireOrigin'],
  // Target shorthand
  ['an empty target list', { target: [] }, 'target'],
  ['a target that is not a URL', { target: 'localhost:5001' }, 'target'],
  ['a target list entry with an unsupported protocol', { target: [A, 'ftp://127.0.0.1:21'] }, 'target[1]'],
  ['a target list that repeats a server', { target: [A, `${A}/`] }, 'target[1]'],
  // Pools
  ['a pool that is not an object', { upstreams: { socket_nodes: A } }, 'upstreams.socket_nodes'],
  ['an unknown pool option', pool({ server: A }), 'upstreams.socket_nodes.server'],
  ['a pool without servers', { upstreams: { socket_nodes: { servers: [] } } }, 'upstreams.socket_nodes.servers'],
  ['a server URL with a path', { upstreams: { socket_nodes: { servers: [A, `${B}/socket.io`] } } }, 'upstreams.socket_nodes.servers[1]'],
  ['a server URL with a query', { upstreams: { socket_nodes: { servers: [`${A}/?x=1`] } } }, 'upstreams.socket_nodes.servers[0]'],
  ['a server URL with credentials', { upstreams: { socket_nodes: { servers: ['http://user:pw@127.0.0.1:5001'] } } }, 'upstreams.socket_nodes.servers[0]'],
  ['a server that is a number', { upstreams: { socket_nodes: { servers: [5001] } } }, 'upstreams.socket_nodes.servers[0]'],
  ['a server object without url', { upstreams: { socket_nodes: { servers: [{ weight: 2 }] } } }, 'upstreams.socket_nodes.servers[0].url'],
  ['an unknown server option', { upstreams: { socket_nodes: { servers: [{ url: A, wieght: 2 }] } } }, 'upstreams.socket_nodes.servers[0].wieght'],
  ['a server weight of 0', { upstreams: { socket_nodes: { servers: [{ url: A, weight: 0 }] } } }, 'upstreams.socket_nodes.servers[0].weight'],
  ['a negative maxConns', { upstreams: { socket_nodes: { servers: [{ url: A, maxConns: -1 }] } } }, 'upstreams.socket_nodes.servers[0].maxConns'],
  ['a backup flag that is not a boolean', { upstreams: { socket_nodes: { servers: [A, { url: B, backup: 'yes' }] } } }, 'upstreams.socket_nodes.servers[1].backup'],
  ['a down flag that is not a boolean', { upstreams: { socket_nodes: { servers: [{ url: A, down: 1 }] } } }, 'upstreams.socket_nodes.servers[0].down'],
  ['a server listed twice', { upstreams: { socket_nodes: { servers: [A, B, 'http://127.0.0.1:5001/'] } } }, 'upstreams.socket_nodes.servers[2]'],
  ['a pool of backups only', { upstreams: { socket_nodes: { servers: [{ url: A, backup: true }] } } }, 'upstreams.socket_nodes.servers'],
  ['an unknown balancing method', pool({ balance: 'ip_hash' }), 'upstreams.socket_nodes.balance'],
  ['a hash balance without a function', pool({ balance: { hash: 'x-user' } }), 'upstreams.socket_nodes.balance'],
  ['a negative slowStart', pool({ slowStart: -1 }), 'upstreams.socket_nodes.slowStart'],
  ['a slowStart that is not an integer', pool({ slowStart: 0.5 }), 'upstreams.socket_nodes.slowStart'],
  ['slowStart with ip-hash', pool({ balance: 'ip-hash', slowStart: 30_000 }), 'upstreams.socket_nodes.slowStart'],
  ['slowStart with a hash balance', pool({ balance: { hash: () => 'k' }, slowStart: 30_000 }), 'upstreams.socket_nodes.slowStart'],
  ['slowStart with ip-hash beside target', { target: [A, B], balance: 'ip-hash', slowStart: 30_000 }, 'slowStart'],
  ['a negative maxFails', pool({ maxFails: -1 }), 'upstreams.socket_nodes.maxFails'],
  ['a failTimeout of 0', pool({ failTimeout: 0 }), 'upstreams.socket_nodes.failTimeout'],
  ['tries of 0', pool({ tries: 0 }), 'upstreams.socket_nodes.tries'],
  ['a failoverTimeout of 0', pool({ failoverTimeout: 0 }), 'upstreams.socket_nodes.failoverTimeout'],
  ['connections of 0', pool({ connections: 0 }), 'upstreams.socket_nodes.connections'],
  ['connections that are not an integer', pool({ connections: 2.5 }), 'upstreams.socket_nodes.connections'],
  ['a retryNonIdempotent that is not a boolean', pool({ retryNonIdempotent: 'yes' }), 'upstreams.socket_nodes.retryNonIdempotent'],
  ['connections beside target that are not a number', { target: A, connections: '8' }, 'connections'],
  // Sticky
  ['sticky that is not an object', pool({ sticky: 'cookie' }), 'upstreams.socket_nodes.sticky'],
  ['an unknown sticky option', pool({ sticky: { ip: true } }), 'upstreams.socket_nodes.sticky.ip'],
  ['a sticky cookie name that is not a token', pool({ sticky: { cookie: 'sg upstream' } }), 'upstreams.socket_nodes.sticky.cookie'],
  ['a sticky cookie secret shorter than 16 characters', pool({ sticky: { cookie: { name: 'sg', secret: 'short' } } }), 'upstreams.socket_nodes.sticky.cookie.secret'],
  ['a sticky cookie maxAge of 0', pool({ sticky: { cookie: { name: 'sg', maxAge: 0 } } }), 'upstreams.socket_nodes.sticky.cookie.maxAge'],
  ['a sticky engineIo that is not a boolean', pool({ sticky: { engineIo: 'yes' } }), 'upstreams.socket_nodes.sticky.engineIo'],
  ['an unknown sticky engineIo option', pool({ sticky: { engineIo: { redis: {} } } }), 'upstreams.socket_nodes.sticky.engineIo.redis'],
  ['a sticky engineIo store that is no Redis client', pool({ sticky: { engineIo: { store: { get () {} } } } }), 'upstreams.socket_nodes.sticky.engineIo.store'],
  // Health
  ['health that is not an object', pool({ health: true }), 'upstreams.socket_nodes.health'],
  ['an unknown health option', pool({ health: { every: 3000 } }), 'upstreams.socket_nodes.health.every'],
  ['a health interval below 100 ms', pool({ health: { interval: 50 } }), 'upstreams.socket_nodes.health.interval'],
  ['a health timeout of 0', pool({ health: { timeout: 0 } }), 'upstreams.socket_nodes.health.timeout'],
  ['a health timeout longer than the interval', pool({ health: { interval: 1000, timeout: 2000 } }), 'upstreams.socket_nodes.health.timeout'],
  ['a health rise of 0', pool({ health: { rise: 0 } }), 'upstreams.socket_nodes.health.rise'],
  ['a health fall of 0', pool({ health: { fall: 0 } }), 'upstreams.socket_nodes.health.fall'],
  ['an unknown health check type', pool({ health: { type: 'udp' } }), 'upstreams.socket_nodes.health.type'],
  ['a health path without a leading slash', pool({ health: { type: 'http', path: 'healthz' } }), 'upstreams.socket_nodes.health.path'],
  ['a health expectStatus given as text', pool({ health: { type: 'http', expectStatus: 'ok' } }), 'upstreams.socket_nodes.health.expectStatus'],
  ['a health expectStatus range with low above high', pool({ health: { type: 'http', expectStatus: [500, 200] } }), 'upstreams.socket_nodes.health.expectStatus'],
  ['a health expectStatus range with a non-status entry', pool({ health: { type: 'http', expectStatus: [200, 'x'] } }), 'upstreams.socket_nodes.health.expectStatus'],
  ['a health expectStatus outside 100-599', pool({ health: { type: 'http', expectStatus: 99 } }), 'upstreams.socket_nodes.health.expectStatus'],
  ['a health expectBody that is a number', pool({ health: { type: 'http', expectBody: 42 } }), 'upstreams.socket_nodes.health.expectBody'],
  // TLS
  ['tls that is not an object', pool({ tls: true }), 'upstreams.socket_nodes.tls'],
  ['an unknown tls option', pool({ tls: { cert: 'x' } }), 'upstreams.socket_nodes.tls.cert'],
  ['a tls ca that is a number', pool({ tls: { ca: 42 } }), 'upstreams.socket_nodes.tls.ca'],
  ['a tls rejectUnauthorized that is not a boolean', pool({ tls: { rejectUnauthorized: 'no' } }), 'upstreams.socket_nodes.tls.rejectUnauthorized'],
  ['an empty tls servername', pool({ tls: { servername: '' } }), 'upstreams.socket_nodes.tls.servername'],
  // Routes
  ['routes that are not an array', { ...pool(), routes: { path: '/' } }, 'routes'],
  ['an empty route list', { ...pool(), routes: [] }, 'routes'],
  ['a route that is not an object', { ...pool(), routes: ['/'] }, 'routes[0]'],
  ['an unknown route option', { ...pool(), routes: [{ upstream: 'socket_nodes', pool: 'x' }] }, 'routes[0].pool'],
  ['a route to a pool that does not exist', { ...pool(), routes: [{ upstream: 'socket-nodes' }] }, 'routes[0].upstream'],
  ['a route path without a leading slash', { ...pool(), routes: [{ path: 'api', upstream: 'socket_nodes' }] }, 'routes[0].path'],
  ['a route path with a query', { ...pool(), routes: [{ path: '/api?x', upstream: 'socket_nodes' }] }, 'routes[0].path'],
  ['a route stripPrefix that is not a boolean', { ...pool(), routes: [{ upstream: 'socket_nodes', stripPrefix: 1 }] }, 'routes[0].stripPrefix'],
  ['an empty route host', { ...pool(), routes: [{ host: '', upstream: 'socket_nodes' }] }, 'routes[0].host'],
  ['a route host with a path', { ...pool(), routes: [{ host: 'example.com/chat', upstream: 'socket_nodes' }] }, 'routes[0].host'],
  ['a route host with a port', { ...pool(), routes: [{ host: 'example.com:8080', upstream: 'socket_nodes' }] }, 'routes[0].host'],
  ['a route host with * inside a label', { ...pool(), routes: [{ host: '*example.com', upstream: 'socket_nodes' }] }, 'routes[0].host'],
  ['a route host with * in the middle', { ...pool(), routes: [{ host: 'chat.*.com', upstream: 'socket_nodes' }] }, 'routes[0].host'],
  ['two pools and no routes', { upstreams: { a: { servers: [A] }, b: { servers: [B] } } }, 'routes'],
  // Headers, trust, upgrades, status
  ['headers that are not an object', { target: A, headers: 'preserve' }, 'headers'],
  ['a headers.xForwarded that is not a boolean', { target: A, headers: { xForwarded: 'yes' } }, 'headers.xForwarded'],
  ['a negative trustProxy hop count', { target: A, trustProxy: -1 }, 'trustProxy'],
  ['a trustProxy string', { target: A, trustProxy: 'loopback' }, 'trustProxy'],
  ['a trustProxy object', { target: A, trustProxy: { loopback: true } }, 'trustProxy'],
  ['a trustProxy list with an entry that is not an address', { target: A, trustProxy: ['127.0.0.1', 'proxy.local'] }, 'trustProxy[1]'],
  ['upgrades given as a string', { target: A, upgrades: 'websocket' }, 'upgrades'],
  ['an upgrade token with a space', { target: A, upgrades: ['web socket'] }, 'upgrades'],
  ['status given as a string', { target: A, status: 'on' }, 'status'],
  ['an unknown status option', { target: A, status: { page: '/status' } }, 'status.page'],
  ['a status path without a leading slash', { target: A, status: { path: 'status' } }, 'status.path'],
  ['a status host that is not a string', { target: A, status: { host: 42 } }, 'status.host'],
  ['a status auth that is not a function', { target: A, status: { auth: true } }, 'status.auth'],
]

for (const [what, options, path] of REFUSED) {
  test(`options: ${what} is refused naming ${path}`, () => {
    assertRefused(options, path)
  })
}

test('options: the error names the rule after the path', () => {
  const err = assertRefused(pool({ health: { interval: 50 } }), 'upstreams.socket_nodes.health.interval')
  assert.equal(err.message, 'upstreams.socket_nodes.health.interval must be an integer >= 100 (ms)')
})

test('options: an unknown option lists the ones that exist', () => {
  const err = assertRefused({ target: A, timeouts: { read: 1 } }, 'timeouts.read')
  assert.match(err.message, /connect, handshake, request, send, idle/)
})

// Renamed options

const RENAMED: Array<[string, unknown, string]> = [
  ['connectTimeout', { target: A, connectTimeout: 1000 }, 'timeouts.connect'],
  ['proxyTimeout', { target: A, proxyTimeout: 1000 }, 'timeouts.request'],
  ['timeout', { target: A, timeout: 1000 }, 'timeouts.request'],
  ['ws', { target: A, ws: true }, 'upgrades'],
  ['xfwd', { target: A, xfwd: true }, 'headers.xForwarded'],
  ['changeOrigin', { target: A, changeOrigin: true }, "headers.host: 'upstream'"],
]

for (const [old, options, now] of RENAMED) {
  test(`options: the renamed option ${old} is refused with a hint to ${now}`, () => {
    const err = assertRefused(options, old)
    assert.ok(err.message.endsWith(`use ${now}`), err.message)
  })
}

// Defaults

test('options: timeouts default to connect 5000, handshake 10000, request 60000, send 60000, idle 0 and maxLifetime 0', () => {
  const defaults = { connect: 5_000, handshake: 10_000, request: 60_000, send: 60_000, idle: 0, maxLifetime: 0 }
  assert.deepEqual({ ...normalizeOptions({ target: A }).timeouts }, defaults)
  assert.deepEqual({ ...DEFAULT_TIMEOUTS }, defaults)
})

test('options: one timeout given leaves the others at their defaults', () => {
  assert.deepEqual({ ...normalizeOptions({ target: A, timeouts: { request: 120_000 } }).timeouts },
    { connect: 5_000, handshake: 10_000, request: 120_000, send: 60_000, idle: 0, maxLifetime: 0 })
})

test('options: limits.perClient is off unless given, and its burst defaults to one second of the rate', () => {
  assert.equal(normalizeOptions({ target: A }).limits.perClient, null)
  assert.deepEqual(normalizeOptions({ target: A, limits: { perClient: { requestsPerSecond: 2.5 } } }).limits.perClient,
    { connections: null, requestsPerSecond: 2.5, burst: 3, upgradesPerMinute: null, maxClients: 65_536 })
})

test('options: origins is off unless given', () => {
  assert.equal(normalizeOptions({ target: A }).originAllowed, null)
})

test('options: limits.body defaults to 1048576 bytes', () => {
  assert.equal(normalizeOptions({ target: A }).limits.body, 1_048_576)
  assert.equal(DEFAULT_BODY_LIMIT, 1_048_576)
})

test('options: zero is kept where it is a real value', () => {
  const options = normalizeOptions({ ...pool({ maxFails: 0 }), timeouts: { idle: 0 }, limits: { body: 0 } } as GatewayOptions)
  assert.equal(options.limits.body, 0)
  assert.equal(options.timeouts.idle, 0)
  assert.equal(options.upstreams[0]?.maxFails, 0)
})

test('options: upgrades default to websocket only', () => {
  assert.deepEqual([...normalizeOptions({ target: A }).upgrades], ['websocket'])
})

test('options: upgrade tokens are kept in lower case', () => {
  assert.deepEqual([...normalizeOptions({ target: A, upgrades: ['WebSocket', 'h2c'] }).upgrades], ['websocket', 'h2c'])
})

test('options: a pool of two gets round-robin, engine.io stickiness, maxFails 1, failTimeout 10000 and no health checks by default', () => {
  const upstream = normalizeOptions(pool()).upstreams[0]
  assert.ok(upstream !== undefined)
  assert.equal(upstream.balance, 'round-robin')
  assert.equal(upstream.maxFails, 1)
  assert.equal(upstream.failTimeout, 10_000)
  assert.equal(upstream.health, null)
  assert.equal(upstream.tls, null)
  assert.deepEqual(upstream.sticky, { engineIo: true, store: null, cookie: null })
})

test('options: slowStart defaults to 0 and is taken beside target with the weighted methods', () => {
  assert.equal(normalizeOptions(pool()).upstreams[0]?.slowStart, 0)
  for (const balance of ['round-robin', 'least-conn', 'random-two'] as const) {
    assert.equal(normalizeOptions({ target: [A, B], balance, slowStart: 30_000 }).upstreams[0]?.slowStart, 30_000)
  }
})

test('options: an expectBody RegExp with g or y matches every probe, not every other one', () => {
  const given = /ok/gy
  const health = normalizeOptions(pool({ health: { type: 'http', expectBody: given } })).upstreams[0]?.health
  const re = health?.expectBody as RegExp
  assert.deepEqual([re.test('ok'), re.test('ok'), re.test('ok')], [true, true, true])
  assert.equal(given.flags, 'gy')
})

test('options: a pool caps each server at 1024 connections and replays no non-idempotent request by default', () => {
  const upstream = normalizeOptions(pool()).upstreams[0]
  assert.equal(upstream?.connections, 1_024)
  assert.equal(upstream?.retryNonIdempotent, false)
})

test('options: a pool of one server learns no engine.io sessions by default', () => {
  assert.deepEqual(normalizeOptions({ target: A }).upstreams[0]?.sticky, { engineIo: false, store: null, cookie: null })
})

test('options: sticky.engineIo false turns the default off; a cookie alone keeps it on', () => {
  assert.equal(normalizeOptions(pool({ sticky: { engineIo: false } })).upstreams[0]?.sticky.engineIo, false)
  assert.equal(normalizeOptions(pool({ sticky: { cookie: 'sg' } })).upstreams[0]?.sticky.engineIo, true)
})

test('options: sticky.engineIo { store } keeps engine.io stickiness on, with the client behind its adapter', async () => {
  const { Redis } = await import('ioredis')
  const client = new Redis({ lazyConnect: true })
  const sticky = normalizeOptions(pool({ sticky: { engineIo: { store: client } } })).upstreams[0]!.sticky
  assert.equal(sticky.engineIo, true)
  assert.equal(sticky.store?.kind, 'ioredis')
  assert.equal(Object.isFrozen(client), false, 'the caller\'s client is not frozen')
  client.disconnect()
})

test('options: the target shorthand takes pool options beside it', () => {
  const upstream = normalizeOptions({
    target: [A, B], balance: 'ip-hash', sticky: { cookie: 'sg' }, health: {}, maxFails: 3, connections: 8, retryNonIdempotent: true,
  }).upstreams[0]
  assert.equal(upstream?.balance, 'ip-hash')
  assert.equal(upstream?.sticky.cookie?.name, 'sg')
  assert.equal(upstream?.health?.interval, 3_000)
  assert.equal(upstream?.maxFails, 3)
  assert.equal(upstream?.connections, 8)
  assert.equal(upstream?.retryNonIdempotent, true)
})

test('options: a pool option at the top level without target is refused, naming where it goes', () => {
  assert.throws(() => normalizeOptions({ ...pool(), balance: 'ip-hash' }), { code: 'SOCKGATE_ERR_INVALID_OPTION', message: /^balance is a pool option/ })
})

test('options: a pool option beside target is checked under its own name', () => {
  assert.throws(() => normalizeOptions({ target: A, health: { interval: 5 } }), { message: /^health\.interval must be an integer >= 100/ })
})

test('options: a server may carry a name; names are unique within a pool', () => {
  assert.equal(normalizeOptions({ target: [{ url: A, name: 'node-1' }] }).upstreams[0]?.servers[0]?.name, 'node-1')
  assert.throws(() => normalizeOptions({ target: [{ url: A, name: 'n' }, { url: B, name: 'n' }] }), { message: /target\[1\]\.name repeats "n"/ })
  assert.throws(() => normalizeOptions({ target: [{ url: A, name: 'a b' }] }), { message: /target\[0\]\.name must be 1 to 64/ })
})

test('options: hooks must be functions and a logger needs info, warn, error and debug', () => {
  assert.throws(() => normalizeOptions({ target: A, authorize: true as never }), { message: /^authorize must be a function/ })
  assert.throws(() => normalizeOptions({ target: A, logger: { info () {} } as never }), { message: /^logger must be a pino-compatible logger/ })
  assert.equal(normalizeOptions({ target: A, logger: console }).logger, console)
})

test('options: tries default to the number of servers and failoverTimeout to timeouts.connect + timeouts.handshake', () => {
  const upstream = normalizeOptions({ ...pool(), timeouts: { connect: 2_000, handshake: 3_000 } }).upstreams[0]
  assert.equal(upstream?.tries, 2)
  assert.equal(upstream?.failoverTimeout, 5_000)
  assert.equal(normalizeOptions({ target: A }).upstreams[0]?.failoverTimeout, 15_000)
})

test('options: a server given as a URL gets weight 1 and is neither backup nor down', () => {
  assert.deepEqual(normalizeOptions({ target: A }).upstreams[0]?.servers, [{ url: A, name: null, weight: 1, backup: false, down: false, maxConns: 0 }])
})

test('options: health given as {} gets interval 3000, rise 2, fall 3, timeout 1000 and a tcp check', () => {
  assert.deepEqual(normalizeOptions(pool({ health: {} })).upstreams[0]?.health, {
    interval: 3_000, rise: 2, fall: 3, timeout: 1_000, type: 'tcp', path: '/', expectStatus: [200, 399], expectBody: null,
  })
})

test('options: an engine.io health check probes /socket.io/ by default', () => {
  assert.equal(normalizeOptions(pool({ health: { type: 'engine.io' } })).upstreams[0]?.health?.path, '/socket.io/')
})

test('options: a health interval shorter than the default timeout lowers the timeout to the interval', () => {
  assert.equal(normalizeOptions(pool({ health: { interval: 500 } })).upstreams[0]?.health?.timeout, 500)
})

test('options: a single expectStatus becomes a one-status range', () => {
  assert.deepEqual(normalizeOptions(pool({ health: { type: 'http', expectStatus: 204 } })).upstreams[0]?.health?.expectStatus, [204, 204])
})

test('options: the status page is off by default and at /sockgate/status when turned on', () => {
  assert.equal(normalizeOptions({ target: A }).status, null)
  assert.equal(normalizeOptions({ target: A, status: true }).status?.path, '/sockgate/status')
})

test('options: headers default to X-Forwarded-* on and the client Host preserved', () => {
  const { headers } = normalizeOptions({ target: A })
  assert.equal(headers.xForwarded, true)
  assert.equal(headers.forwarded, false)
  assert.deepEqual(headers.host, { kind: 'preserve' })
})

test('options: no peer is trusted by default', () => {
  const { trust } = normalizeOptions({ target: A })
  assert.equal(trust('127.0.0.1', 0), false)
})

test('options: a trustProxy list compiles into a predicate', () => {
  const { trust } = normalizeOptions({ target: A, trustProxy: ['10.0.0.0/8'] })
  assert.equal(trust('10.1.2.3', 0), true)
  assert.equal(trust('192.0.2.1', 0), false)
})

// Target shorthand

test('options: a target string makes one pool named default and one route for every host and path', () => {
  const options = normalizeOptions({ target: A })
  assert.equal(options.upstreams.length, 1)
  assert.equal(options.upstreams[0]?.name, DEFAULT_POOL)
  assert.equal(DEFAULT_POOL, 'default')
  assert.deepEqual(options.upstreams[0]?.servers.map((s) => s.url), [A])
  assert.deepEqual(options.routes, [{ host: { kind: 'any' }, path: '/', upstream: 'default', stripPrefix: false, log: true }])
})

test('options: a target list keeps its servers in order with their settings', () => {
  const options = normalizeOptions({ target: [A, { url: B, weight: 5, backup: true }] })
  assert.deepEqual(options.upstreams[0]?.servers, [
    { url: A, name: null, weight: 1, backup: false, down: false, maxConns: 0 },
    { url: B, name: null, weight: 5, backup: true, down: false, maxConns: 0 },
  ])
})

test('options: server URLs are reduced to their origin', () => {
  const options = normalizeOptions({ target: ['http://LOCALHOST:80/', 'ws://127.0.0.1:5002', 'https://Example.com:443'] })
  assert.deepEqual(options.upstreams[0]?.servers.map((s) => s.url), ['http://localhost', 'ws://127.0.0.1:5002', 'https://example.com'])
})

test('options: target and routes together route to the default pool', () => {
  const options = normalizeOptions({ target: A, routes: [{ path: '/rt', upstream: 'default', stripPrefix: true }] })
  assert.deepEqual(options.routes, [{ host: { kind: 'any' }, path: '/rt', upstream: 'default', stripPrefix: true, log: true }])
})

test('options: one pool without routes gets a route for every host and path', () => {
  assert.deepEqual(normalizeOptions(pool()).routes, [{ host: { kind: 'any' }, path: '/', upstream: 'socket_nodes', stripPrefix: false, log: true }])
})

// Frozen

test('options: the returned object is frozen', () => {
  const options = normalizeOptions({ ...pool(), routes: [{ upstream: 'socket_nodes' }] })
  assert.ok(Object.isFrozen(options))
  assert.ok(Object.isFrozen(options.timeouts))
  assert.ok(Object.isFrozen(options.limits))
  assert.ok(Object.isFrozen(options.upstreams))
  assert.ok(Object.isFrozen(options.routes))
  assert.ok(Object.isFrozen(options.headers))
  assert.throws(() => { (options.limits as { body: number }).body = 1 }, TypeError)
})

test('options: every nested object and array of the normalized options is frozen', () => {
  const options = normalizeOptions({
    upstreams: {
      socket_nodes: {
        servers: [A, { url: B, weight: 2 }],
        balance: { hash: (req) => req.url ?? '' },
        sticky: { cookie: { name: 'sg', secret: 'a-secret-of-16-chars' } },
        health: { type: 'http', expectStatus: [200, 204] },
        tls: { ca: ['-----BEGIN CERTIFICATE-----'], servername: 'a.example' },
      },
    },
    routes: [{ host: '*.example.com', upstream: 'socket_nodes' }, { host: /^b\./, path: '/b', upstream: 'socket_nodes' }],
    headers: { set: { 'X-Gateway': 'sg' }, remove: ['x-debug'] },
    status: { path: '/status' },
  })
  const upstream = options.upstreams[0] as unknown as Record<string, any>
  const mutations: Array<[string, () => void]> = [
    ['a server', () => { upstream.servers[1].weight = 9 }],
    ['the server list', () => { upstream.servers.push(upstream.servers[0]) }],
    ['the balance object', () => { upstream.balance.hash = () => '' }],
    ['the sticky cookie', () => { upstream.sticky.cookie.secret = 'x' }],
    ['the sticky object', () => { upstream.sticky.engineIo = false }],
    ['the health settings', () => { upstream.health.interval = 1 }],
    ['the expected status range', () => { upstream.health.expectStatus[0] = 100 }],
    ['the tls settings', () => { upstream.tls.servername = 'evil.example' }],
    ['the tls ca list', () => { upstream.tls.ca.push('x') }],
    ['a route', () => { (options.routes[0] as any).upstream = 'x' }],
    ['a route host matcher', () => { (options.routes[0] as any).host.suffix = '.evil.example' }],
    ['a header to set', () => { (options.headers.set[0] as any)[1] = 'x' }],
    ['the host rule', () => { (options.headers.host as any).kind = 'upstream' }],
    ['the status page', () => { (options.status as any).path = '/' }],
    ['the timeouts', () => { (options.timeouts as any).connect = 1 }],
  ]
  for (const [what, mutate] of mutations) assert.throws(mutate, TypeError, what)
})

test('options: freezing leaves the caller\'s logger, tls object, ca list and RegExp host their own', () => {
  const logger = { info () {}, warn () {}, error () {}, debug () {} }
  const ca = ['-----BEGIN CERTIFICATE-----']
  const tls = { ca }
  const host = /^b\./
  const options = normalizeOptions({ ...pool({ tls }), routes: [{ host, upstream: 'socket_nodes' }], logger })
  assert.equal(options.logger, logger)
  assert.ok(!Object.isFrozen(logger))
  assert.ok(!Object.isFrozen(tls))
  assert.ok(!Object.isFrozen(ca))
  assert.ok(!Object.isFrozen(host))
  assert.deepEqual(options.upstreams[0]?.tls, { ca })
})

test('options: the caller\'s objects are not changed', () => {
  const input = { ...pool({ health: { interval: 500 } }), timeouts: { request: 1_000 } } as GatewayOptions
  const before = structuredClone(input)
  normalizeOptions(input)
  assert.deepEqual(input, before)
})
