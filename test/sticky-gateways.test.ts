/**
 * Sticky sessions across gateways (issue 11): a Socket.IO session
 * handshaken through gateway A goes on through gateway B, by the server name
 * its sid carries (`engineIoId`) or through a shared Redis store (ioredis and
 * node-redis), and a store that stops answering costs a pin, never a request.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { Redis } from 'ioredis'
import { createClient } from 'redis'
import { engineIoId, type Gateway, type ProxyErrorEvent, type ServerOption, type StickyOptions } from '../src/index.js'
import { request, socketIoCluster, type SocketIoNode } from './helpers/balance.js'
import { startRedis, redisSkip, type RedisServer } from './helpers/redis.js'
import { gatewayServer, nextMessage, openWs, recordEvents } from './helpers/servers.js'
import { Stickiness } from '../src/balance/stickiness.js'
import { normalizeOptions } from '../src/options.js'
import { UpstreamServer } from '../src/upstream/server.js'

const POLLING = '/socket.io/?EIO=4&transport=polling'
const TEXT = { 'content-type': 'text/plain;charset=UTF-8' }

/** A gateway of its own over `nodes` (pool `io`, round-robin): what another process with the same config would be. */
async function gateway (t: TestContext, nodes: readonly SocketIoNode[], opts: { named?: boolean, sticky?: StickyOptions } = {}): Promise<{ gateway: Gateway, port: number }> {
  const servers: ServerOption[] = nodes.map((n) => opts.named === true ? { url: n.url, name: n.name } : n.url)
  return await gatewayServer(t, { upstreams: { io: { servers, ...(opts.sticky === undefined ? {} : { sticky: opts.sticky }) } } })
}

/** Open an engine.io session through the gateway on `port`; resolves with its sid. */
async function handshake (port: number): Promise<string> {
  const open = await request(port, POLLING)
  assert.equal(open.status, 200, open.body)
  return (JSON.parse(open.body.slice(1)) as { sid: string }).sid
}

/**
 * A Socket.IO session spoken by hand over polling, each request on a fresh
 * connection to the next of `ports` in turn (handshake on the first): connect
 * the namespace, emit `ack` with an ack id, read the ack. Resolves with the
 * node that acked, or the first answer that was not a success.
 */
async function roundTrip (ports: readonly number[], sid?: string): Promise<{ sid: string, node?: string, failure?: string }> {
  let turn = 0
  const next = (): number => ports[turn++ % ports.length]!
  sid ??= await handshake(next())
  const at = `${POLLING}&sid=${encodeURIComponent(sid)}`
  const steps: Array<[method: string, body?: string]> = [['POST', '40'], ['GET'], ['POST', '421["ack","hi"]'], ['GET']]
  let last = ''
  for (const [method, body] of steps) {
    const answer = await request(next(), at, method === 'POST' ? { method, body: body!, headers: TEXT } : {})
    if (answer.status !== 200) return { sid, failure: `${answer.status} ${answer.body}` }
    last = answer.body
  }
  const ack = /^431(\[.*\])$/.exec(last)
  if (ack === null) return { sid, failure: `no ack in ${JSON.stringify(last)}` }
  return { sid, node: (JSON.parse(ack[1]!) as Array<{ node: string }>)[0]!.node }
}

/**
 * Upgrade the polling session `sid` to WebSocket through the gateway on
 * `port` (engine.io's probe: `2probe`, answered `3probe`); resolves with the
 * answer, which only the session's own node gives.
 */
async function upgradeSession (t: TestContext, port: number, sid: string): Promise<string> {
  const ws = await openWs(t, `http://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket&sid=${encodeURIComponent(sid)}`)
  ws.send('2probe')
  return (await nextMessage(ws)).toString()
}

/** `n` Socket.IO nodes whose engine.io ids carry their names (`n0`, `n1`, ...). */
async function namedCluster (t: TestContext, n: number): Promise<SocketIoNode[]> {
  const nodes = await socketIoCluster(t, n)
  for (const node of nodes) node.io.engine.generateId = engineIoId(node.name)
  return nodes
}

const unknownSids = (nodes: readonly SocketIoNode[]): number => nodes.reduce((sum, n) => sum + n.unknownSid(), 0)

// ---------------------------------------------------------------- names

test('sticky names: a session handshaken through gateway A goes on through gateway B, by the name its sid carries', async (t) => {
  const nodes = await namedCluster(t, 3)
  const a = await gateway(t, nodes, { named: true })
  const b = await gateway(t, nodes, { named: true })
  // A's round-robin moves on, so A and B would balance the session's requests to different nodes.
  await handshake(a.port)
  const { sid, node, failure } = await roundTrip([a.port, b.port])
  assert.equal(failure, undefined)
  assert.equal(node, sid.slice(0, sid.indexOf('.')), 'the node that made the session answered everything')
  assert.equal(unknownSids(nodes), 0)
  assert.equal(b.gateway.pool('io').sticky!.sessions!.size, 0, 'B kept no table for it')
})

test('sticky names: the websocket upgrade of a session handshaken through gateway A goes through gateway B', async (t) => {
  const nodes = await namedCluster(t, 3)
  const a = await gateway(t, nodes, { named: true })
  const b = await gateway(t, nodes, { named: true })
  await handshake(a.port)
  assert.equal(await upgradeSession(t, b.port, await handshake(a.port)), '3probe')
})

test('sticky names: a named session is not learnt into the table', async (t) => {
  const nodes = await namedCluster(t, 2)
  const a = await gateway(t, nodes, { named: true })
  await handshake(a.port)
  assert.equal(a.gateway.pool('io').sticky!.sessions!.size, 0)
})

test('sticky names: without names in the pool, the same sessions fail across gateways (control)', async (t) => {
  const nodes = await namedCluster(t, 3)
  const a = await gateway(t, nodes)
  const b = await gateway(t, nodes)
  await handshake(a.port)
  const { failure } = await roundTrip([a.port, b.port])
  assert.match(failure ?? '', /^400 .*Session ID unknown/)
})

test('sticky names: a name no member has is balanced as before, and learnt from the handshake', async (t) => {
  const nodes = await socketIoCluster(t, 2)
  for (const node of nodes) node.io.engine.generateId = engineIoId(`other-${node.name}`)
  const a = await gateway(t, nodes, { named: true })
  const { failure, node } = await roundTrip([a.port])
  assert.equal(failure, undefined)
  assert.ok(node !== undefined)
  assert.equal(a.gateway.pool('io').sticky!.sessions!.size, 1)
})

test('sticky names: the named server down, the request goes to another and the miss names the server it lived on', async (t) => {
  const nodes = await namedCluster(t, 2)
  const a = await gateway(t, nodes, { named: true })
  const events = recordEvents(a.gateway)
  const sid = await handshake(a.port)
  const owner = nodes.find((n) => sid.startsWith(`${n.name}.`))!
  a.gateway.pool('io').markDown(owner.url)
  const res = await request(a.port, `${POLLING}&sid=${sid}`)
  assert.equal(res.status, 400, 'the other node\'s "Session ID unknown" is relayed')
  const miss = events.errors.find((e) => e.error.code === 'SOCKGATE_ERR_STICKY_MISS')
  assert.ok(miss !== undefined)
  assert.notEqual(miss.server, owner.url)
  assert.match(miss.error.message, new RegExp(`lives on ${owner.url}, which could not take the request`))
})

test('sticky names: a draining server keeps its named sessions', async (t) => {
  const nodes = await namedCluster(t, 2)
  const a = await gateway(t, nodes, { named: true })
  const b = await gateway(t, nodes, { named: true })
  const sid = await handshake(a.port)
  const owner = nodes.find((n) => sid.startsWith(`${n.name}.`))!
  // No tunnels: the drain is over at once, and the server stays draining.
  assert.equal(await b.gateway.pool('io').drain(owner.url, { timeout: 1_000 }), true)
  assert.equal(b.gateway.status().pools.io!.servers.find((s) => s.url === owner.url)!.state, 'draining')
  const { failure, node } = await roundTrip([b.port], sid)
  assert.equal(failure, undefined)
  assert.equal(node, owner.name)
})

test('sticky names: sticky.engineIo false turns name routing off too', async (t) => {
  const nodes = await namedCluster(t, 3)
  const a = await gateway(t, nodes, { named: true, sticky: { engineIo: false } })
  await handshake(a.port)
  const { failure } = await roundTrip([a.port])
  assert.match(failure ?? '', /^400 .*Session ID unknown/)
})

// ---------------------------------------------------------------- store

/** A Redis client of either library, connected to `redis`, and a way to stop it. */
interface StoreClient {
  client: object
  /** Raw commands for the test's own checks. */
  command: (args: string[]) => Promise<unknown>
}

const CLIENTS: Record<string, (t: TestContext, redis: RedisServer) => Promise<StoreClient>> = {
  async ioredis (t, redis) {
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 100 })
    client.on('error', () => {})
    t.after(() => client.disconnect())
    await client.connect()
    return { client, command: async ([name, ...args]) => await client.call(name!, ...args) }
  },
  async 'node-redis' (t, redis) {
    const client = createClient({ url: redis.url, socket: { reconnectStrategy: () => 100 } })
    client.on('error', () => {})
    t.after(() => { if (client.isOpen) client.destroy() })
    await client.connect()
    return { client, command: async (args) => await client.sendCommand(args) }
  },
}

/** A redis-server of the test's own, stopped when it ends. */
async function redisServer (t: TestContext): Promise<RedisServer> {
  const redis = await startRedis()
  t.after(() => redis.stop())
  return redis
}

/** Polls `check` until it holds or `ms` passes (the gateway writes to the store after it answered); returns whether it held. */
async function until (check: () => Promise<boolean>, ms = 5_000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return false
}

const storeErrors = (errors: readonly ProxyErrorEvent[]): ProxyErrorEvent[] => errors.filter((e) => e.error.code === 'SOCKGATE_ERR_STICKY_STORE')

for (const [library, connect] of Object.entries(CLIENTS)) {
  test(`sticky store (${library}): a session handshaken through gateway A goes on through gateway B`, { skip: redisSkip }, async (t) => {
    const redis = await redisServer(t)
    const nodes = await socketIoCluster(t, 3)
    // One client per gateway, as two processes would have.
    const a = await gateway(t, nodes, { sticky: { engineIo: { store: (await connect(t, redis)).client } } })
    const b = await gateway(t, nodes, { sticky: { engineIo: { store: (await connect(t, redis)).client } } })
    await handshake(a.port)
    const { failure, node } = await roundTrip([a.port, b.port])
    assert.equal(failure, undefined)
    assert.ok(node !== undefined)
    assert.equal(unknownSids(nodes), 0)
  })

  test(`sticky store (${library}): the websocket upgrade of a session handshaken through gateway A goes through gateway B`, { skip: redisSkip }, async (t) => {
    const redis = await redisServer(t)
    const nodes = await socketIoCluster(t, 3)
    const a = await gateway(t, nodes, { sticky: { engineIo: { store: (await connect(t, redis)).client } } })
    const b = await gateway(t, nodes, { sticky: { engineIo: { store: (await connect(t, redis)).client } } })
    await handshake(a.port)
    const sid = await handshake(a.port)
    assert.equal(await upgradeSession(t, b.port, sid), '3probe')
  })

  test(`sticky store (${library}): the learnt sid is kept under the pool's prefix for the table's idle time`, { skip: redisSkip }, async (t) => {
    const redis = await redisServer(t)
    const nodes = await socketIoCluster(t, 2)
    const store = await connect(t, redis)
    const a = await gateway(t, nodes, { sticky: { engineIo: { store: store.client } } })
    const sid = await handshake(a.port)
    const owner = a.gateway.pool('io').sticky!.sessions!.get(sid)!
    const key = `sockgate:sid:io:${sid}`
    assert.ok(await until(async () => await store.command(['GET', key]) === owner.url), 'the sid names its server in the store')
    const ttl = Number(await store.command(['PTTL', key]))
    assert.ok(ttl > 0 && ttl <= 120_000, `PTTL ${ttl}`)
  })

  test(`sticky store (${library}): "Session ID unknown" deletes the sid from the store`, { skip: redisSkip }, async (t) => {
    const redis = await redisServer(t)
    const nodes = await socketIoCluster(t, 2)
    const store = await connect(t, redis)
    const a = await gateway(t, nodes, { sticky: { engineIo: { store: store.client } } })
    const b = await gateway(t, nodes, { sticky: { engineIo: { store: (await connect(t, redis)).client } } })
    const sid = await handshake(a.port)
    // The node ends the session (a close packet); its next request, through B, is refused.
    assert.equal((await request(a.port, `${POLLING}&sid=${sid}`, { method: 'POST', body: '1', headers: TEXT })).status, 200)
    assert.equal((await request(b.port, `${POLLING}&sid=${sid}`)).status, 400)
    assert.ok(await until(async () => await store.command(['EXISTS', `sockgate:sid:io:${sid}`]) === 0), 'the sid is gone from the store')
  })

  test(`sticky store (${library}): Redis stopped mid-test, requests are still answered and the store is reported once`, { skip: redisSkip }, async (t) => {
    const redis = await redisServer(t)
    const nodes = await socketIoCluster(t, 2)
    const a = await gateway(t, nodes, { sticky: { engineIo: { store: (await connect(t, redis)).client } } })
    const b = await gateway(t, nodes, { sticky: { engineIo: { store: (await connect(t, redis)).client } } })
    const events = recordEvents(b.gateway)
    const sid = await handshake(a.port)
    await redis.stop()
    // B never saw the session; without the store it is balanced: answered by some node, rightly or not.
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) statuses.push((await request(b.port, `${POLLING}&sid=${sid}`, { method: 'POST', body: '3', headers: TEXT })).status)
    for (let i = 0; i < 2; i++) statuses.push((await request(b.port, POLLING)).status)
    assert.ok(statuses.every((s) => s === 200 || s === 400), `statuses ${statuses.join(', ')}`)
    const reports = storeErrors(events.errors)
    assert.equal(reports.length, 1)
    assert.equal(reports[0]!.pool, 'io')
    assert.equal(reports[0]!.error.statusCode, 503)
    assert.match(reports[0]!.error.message, new RegExp(`^The sticky session store of pool "io" \\(${library}\\) `))
  })
}

test('sticky store: a session still in use here pushes its expiry in the store out, at most every quarter of the idle time', { skip: redisSkip }, async (t) => {
  const redis = await redisServer(t)
  const store = await CLIENTS.ioredis!(t, redis)
  const spec = normalizeOptions({ upstreams: { io: { servers: ['http://127.0.0.1:5001', 'http://127.0.0.1:5002'], sticky: { engineIo: { store: store.client } } } } }).upstreams[0]!
  const servers = spec.servers.map((s) => new UpstreamServer(s))
  let now = 1_000_000
  const sticky = new Stickiness(spec.sticky, () => servers, { idleMs: 1_000, now: () => now }, { pool: 'io', onStoreDown: () => {} })
  const handshake = { url: POLLING, headers: {} } as IncomingMessage
  sticky.learnFromResponse(handshake, servers[1]!, 200, Buffer.from('0{"sid":"abc","upgrades":[]}'))
  const key = 'sockgate:sid:io:abc'
  assert.ok(await until(async () => await store.command(['GET', key]) === servers[1]!.url))
  // A long expiry of the test's own shows whether the gateway set it again.
  await store.command(['PEXPIRE', key, '60000'])
  const poll = { url: `${POLLING}&sid=abc`, headers: {} } as IncomingMessage
  assert.equal(sticky.lookup(poll), servers[1])
  now += 200
  assert.equal(sticky.lookup(poll), servers[1])
  assert.ok(Number(await store.command(['PTTL', key])) > 1_000, 'not yet: less than a quarter of the idle time went by')
  now += 100
  assert.equal(sticky.lookup(poll), servers[1])
  assert.ok(await until(async () => Number(await store.command(['PTTL', key])) <= 1_000), 'the expiry is the idle time again')
})

/**
 * A gateway whose store is a Redis the test can pause (`CLIENT PAUSE`: every
 * client's commands wait, the test's own included), and its store reports.
 */
async function pausableStore (t: TestContext): Promise<{ port: number, reports: () => ProxyErrorEvent[], pause: (ms: number) => Promise<unknown>, admin: StoreClient }> {
  const redis = await redisServer(t)
  const nodes = await socketIoCluster(t, 2)
  const store = await CLIENTS.ioredis!(t, redis)
  const admin = await CLIENTS.ioredis!(t, redis)
  const a = await gateway(t, nodes, { sticky: { engineIo: { store: store.client } } })
  const events = recordEvents(a.gateway)
  return { port: a.port, reports: () => storeErrors(events.errors), pause: (ms) => admin.command(['CLIENT', 'PAUSE', String(ms), 'ALL']), admin }
}

test('sticky store: a Redis that does not answer holds a request for at most the bounded wait, then it is balanced', { skip: redisSkip }, async (t) => {
  const { port, reports, pause } = await pausableStore(t)
  // Redis holds every command for 2 s; the gateway waits 150 ms of them.
  await pause(2_000)
  const res = await request(port, `${POLLING}&sid=not-seen-here`)
  assert.equal(res.status, 400, 'a node answered: the request went on without a pin')
  assert.equal(reports().length, 1)
  assert.match(reports()[0]!.error.message, /did not answer within 150 ms/)
})

test('sticky store: after it works again, the next failure is reported again', { skip: redisSkip }, async (t) => {
  const { port, reports, pause, admin } = await pausableStore(t)
  await pause(500)
  await request(port, `${POLLING}&sid=first`)
  await request(port, `${POLLING}&sid=second`)
  assert.equal(reports().length, 1, 'once while it fails')
  // Paused with the rest, PING answers once the pause is over.
  await admin.command(['PING'])
  await request(port, `${POLLING}&sid=third`)
  await pause(500)
  await request(port, `${POLLING}&sid=fourth`)
  assert.equal(reports().length, 2)
})
