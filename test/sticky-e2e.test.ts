/**
 * Sticky sessions end to end (issue 4): three Socket.IO nodes behind one
 * gateway, polling-only clients, and what happens to their sessions when
 * stickiness is on, off, or its server goes away.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { eventually, gatewayServer, rawExchange, recordEvents, upgradeRequest } from './helpers/servers.js'
import {
  connected, emitAcks, loopbackAddress, request, socketIoClient, socketIoCluster, type SocketIoNode,
} from './helpers/balance.js'
import type { Socket as ClientSocket } from 'socket.io-client'
import type { StickyOptions, BalanceOption } from '../src/index.js'

const CLIENTS = 30
const EMITS = 5

async function stickyGateway (t: TestContext, nodes: readonly SocketIoNode[], sticky: StickyOptions | undefined, balance: BalanceOption = 'round-robin'): Promise<Awaited<ReturnType<typeof gatewayServer>>> {
  return await gatewayServer(t, {
    upstreams: { io: { servers: nodes.map((n) => n.url), balance, ...(sticky === undefined ? {} : { sticky }) } },
  })
}

/** Connects `CLIENTS` polling-only clients at once; resolves with those that connected and how many did not. */
async function connectAll (t: TestContext, url: string, withCredentials = false): Promise<{ sockets: ClientSocket[], failed: number }> {
  const sockets = Array.from({ length: CLIENTS }, () => socketIoClient(t, url, {
    withCredentials,
    reconnectionDelay: 50,
    reconnectionDelayMax: 200,
    randomizationFactor: 0,
  }))
  const ok = await Promise.all(sockets.map((s) => connected(s)))
  return { sockets: sockets.filter((_, i) => ok[i]), failed: ok.filter((x) => !x).length }
}

const unknownSids = (nodes: readonly SocketIoNode[]): number => nodes.reduce((sum, n) => sum + n.unknownSid(), 0)

const POLLING = '/socket.io/?EIO=4&transport=polling'

/** Open an engine.io polling session through the gateway on `port`; resolves with its sid. */
async function openSession (port: number): Promise<string> {
  return (JSON.parse((await request(port, POLLING)).body.slice(1)) as { sid: string }).sid
}

/** Have the session's node end it (a close packet, answered 200 like any POST). */
async function closeSession (port: number, sid: string): Promise<number> {
  return (await request(port, `${POLLING}&sid=${sid}`, { method: 'POST', body: '1', headers: { 'content-type': 'text/plain' } })).status
}

const MODES: Array<{ mode: string, sticky: StickyOptions, withCredentials: boolean }> = [
  { mode: 'engineIo', sticky: { engineIo: true }, withCredentials: false },
  { mode: 'cookie', sticky: { cookie: 'sg_node' }, withCredentials: true },
]

for (const { mode, sticky, withCredentials } of MODES) {
  test(`sticky ${mode}: 30 polling clients on three nodes get every emit acked and never "Session ID unknown"`, async (t) => {
    const nodes = await socketIoCluster(t, 3)
    const { url } = await stickyGateway(t, nodes, sticky)
    const { sockets, failed } = await connectAll(t, url, withCredentials)
    assert.equal(failed, 0)
    const acks = (await Promise.all(sockets.map((s) => emitAcks(s, EMITS)))).flat()
    assert.equal(acks.filter((a) => a === undefined).length, 0, 'every emit is acked')
    assert.equal(unknownSids(nodes), 0)
    // Round-robin underneath spreads the sessions, so stickiness had work to do on every node.
    for (const n of nodes) assert.ok(n.connections() > 0, `${n.name} got sessions`)
  })

  test(`sticky ${mode}: clients of a killed node reconnect to another node and carry on`, async (t) => {
    const nodes = await socketIoCluster(t, 3)
    const { url } = await stickyGateway(t, nodes, sticky)
    const { sockets, failed } = await connectAll(t, url, withCredentials)
    assert.equal(failed, 0)
    const before = await Promise.all(sockets.map((s) => emitAcks(s, 1)))
    const victims = sockets.filter((_, i) => before[i]![0] === 'n0')
    assert.ok(victims.length > 0, 'some clients were on n0')

    // Each victim notices when its long-poll is cut (the gateway fails it over, the other node says
    // "Session ID unknown"), reconnects, and gets a session on another node.
    const back = victims.map((s) => new Promise<void>((resolve) => s.once('disconnect', () => s.once('connect', () => resolve()))))
    await nodes[0]!.kill()
    await Promise.all(back)
    const after = (await Promise.all(sockets.map((s) => emitAcks(s, 2)))).flat()
    assert.equal(after.filter((a) => a === undefined).length, 0, 'every emit after the reconnect is acked')
    assert.ok(after.every((a) => a !== 'n0'))
  })
}

test('control: round-robin with sticky.engineIo false gives polling clients "Session ID unknown"', async (t) => {
  const nodes = await socketIoCluster(t, 3)
  const { url } = await stickyGateway(t, nodes, { engineIo: false })
  const sockets = Array.from({ length: CLIENTS }, () => socketIoClient(t, url, { reconnection: false }))
  const ok = await Promise.all(sockets.map((s) => connected(s)))
  assert.ok(unknownSids(nodes) > 0, 'the nodes refused sessions they do not hold')
  assert.ok(ok.some((x) => !x), 'some clients never connected')
})

test('sticky engineIo: a polling session keeps its server when the client address changes', async (t) => {
  const nodes = await socketIoCluster(t, 3)
  // ip-hash alone would send each new address to its own node, so only the session table keeps this session whole.
  const { port } = await stickyGateway(t, nodes, { engineIo: true }, 'ip-hash')
  const base = '/socket.io/?EIO=4&transport=polling'
  const open = await request(port, base, { localAddress: loopbackAddress(0) })
  assert.equal(open.status, 200)
  const sid = (JSON.parse(open.body.slice(1)) as { sid: string }).sid
  const path = `${base}&sid=${encodeURIComponent(sid)}`

  const connect = await request(port, path, { method: 'POST', body: '40', localAddress: loopbackAddress(1), headers: { 'content-type': 'text/plain' } })
  assert.equal(connect.status, 200)
  const welcome = await request(port, path, { localAddress: loopbackAddress(2) })
  assert.match(welcome.body, /^40/)

  const answeredBy = new Set<string>()
  for (let i = 0; i < 10; i++) {
    const post = await request(port, path, { method: 'POST', body: `42${i}["ack",${i}]`, localAddress: loopbackAddress(3 + 2 * i), headers: { 'content-type': 'text/plain' } })
    assert.equal(post.status, 200, `post from ${loopbackAddress(3 + 2 * i)}`)
    const poll = await request(port, path, { localAddress: loopbackAddress(4 + 2 * i) })
    assert.equal(poll.status, 200)
    const m = new RegExp(`^43${i}\\[\\{"node":"(n\\d)","data":${i}\\}\\]$`).exec(poll.body)
    assert.ok(m, `ack ${i} arrived: ${poll.body}`)
    answeredBy.add(m[1]!)
  }
  assert.equal(answeredBy.size, 1)
  assert.equal(unknownSids(nodes), 0)
})

test('sticky engineIo: a "Session ID unknown" answer forgets the session', async (t) => {
  const nodes = await socketIoCluster(t, 3)
  const { port, gateway } = await stickyGateway(t, nodes, { engineIo: true })
  const base = '/socket.io/?EIO=4&transport=polling'
  const open = await request(port, base)
  const sid = (JSON.parse(open.body.slice(1)) as { sid: string }).sid
  const sessions = gateway.pool('io').sticky!.sessions!
  assert.ok(sessions.get(sid) !== undefined, 'the handshake taught the gateway the session')

  // The node ends the session (a close packet); its next request is refused and the entry goes.
  assert.equal((await request(port, `${base}&sid=${sid}`, { method: 'POST', body: '1', headers: { 'content-type': 'text/plain' } })).status, 200)
  const late = await request(port, `${base}&sid=${sid}`)
  assert.equal(late.status, 400)
  assert.match(late.body, /Session ID unknown/)
  assert.equal(sessions.get(sid), undefined)
})

test('sticky defaults: three nodes with no sticky option carry 30 polling clients without "Session ID unknown"', async (t) => {
  const nodes = await socketIoCluster(t, 3)
  const { url } = await stickyGateway(t, nodes, undefined)
  const { sockets, failed } = await connectAll(t, url)
  assert.equal(failed, 0)
  const acks = (await Promise.all(sockets.map((s) => emitAcks(s, EMITS)))).flat()
  assert.equal(acks.filter((a) => a === undefined).length, 0, 'every emit is acked')
  assert.equal(unknownSids(nodes), 0)
})

test('sticky engineIo: "Session ID unknown" for a session the gateway pinned is reported as SOCKGATE_ERR_STICKY_MISS', async (t) => {
  const nodes = await socketIoCluster(t, 3)
  const { port, gateway } = await stickyGateway(t, nodes, undefined)
  const events = recordEvents(gateway)
  const sid = await openSession(port)
  assert.equal(await closeSession(port, sid), 200)
  const late = await request(port, `${POLLING}&sid=${sid}`)
  assert.equal(late.status, 400, 'the upstream\'s answer is relayed')
  const misses = events.errors.filter((e) => e.error.code === 'SOCKGATE_ERR_STICKY_MISS')
  assert.equal(misses.length, 1)
  assert.deepEqual([misses[0]!.kind, misses[0]!.pool, misses[0]!.error.statusCode], ['http', 'io', 400])
  assert.match(misses[0]!.error.message, new RegExp(`no longer holds engine.io session "${sid}"`))
})

test('sticky engineIo: a session whose node is down goes to another node, and the miss says where it lived', async (t) => {
  const nodes = await socketIoCluster(t, 2)
  const { port, gateway } = await stickyGateway(t, nodes, undefined)
  const events = recordEvents(gateway)
  const sid = await openSession(port)
  const owner = gateway.pool('io').sticky!.sessions!.get(sid)!
  await nodes.find((n) => n.url === owner.url)!.kill()
  const res = await request(port, `${POLLING}&sid=${sid}`)
  assert.equal(res.status, 400, 'the other node\'s answer is relayed')
  const miss = events.errors.find((e) => e.error.code === 'SOCKGATE_ERR_STICKY_MISS')
  assert.ok(miss !== undefined)
  assert.notEqual(miss.server, owner.url)
  assert.match(miss.error.message, new RegExp(`lives on ${owner.url}, which could not take the request`))
})

test('sticky engineIo: a session this gateway never saw open is reported as a miss that points at another gateway', async (t) => {
  const nodes = await socketIoCluster(t, 2)
  const { port, gateway } = await stickyGateway(t, nodes, undefined)
  const events = recordEvents(gateway)
  const res = await request(port, '/socket.io/?EIO=4&transport=polling&sid=opened-elsewhere')
  assert.equal(res.status, 400)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_STICKY_MISS'])
  assert.match(events.errors[0]!.error.message, /never saw the session open: its handshake went through another gateway process/)
})

test('sticky engineIo: a websocket upgrade refused with "Session ID unknown" is reported as a miss of kind upgrade', async (t) => {
  const nodes = await socketIoCluster(t, 2)
  const { port, gateway } = await stickyGateway(t, nodes, undefined)
  const events = recordEvents(gateway)
  const refused = await rawExchange(port, upgradeRequest('/socket.io/?EIO=4&transport=websocket&sid=gone'))
  assert.match(refused.text, /^HTTP\/1\.1 400 /)
  assert.ok(await eventually(() => events.errors.some((e) => e.error.code === 'SOCKGATE_ERR_STICKY_MISS' && e.kind === 'upgrade')))
})

test('sticky engineIo: a websocket upgrade refused with "Session ID unknown" forgets the session', async (t) => {
  const nodes = await socketIoCluster(t, 3)
  const { port, gateway } = await stickyGateway(t, nodes, { engineIo: true })
  const base = '/socket.io/?EIO=4&transport=polling'
  const sid = (JSON.parse((await request(port, base)).body.slice(1)) as { sid: string }).sid
  const sessions = gateway.pool('io').sticky!.sessions!
  // Closed on the node behind the gateway's back: a close packet, answered 200 like any POST.
  assert.equal((await request(port, `${base}&sid=${sid}`, { method: 'POST', body: '1', headers: { 'content-type': 'text/plain' } })).status, 200)
  assert.ok(sessions.get(sid) !== undefined)
  const refused = await rawExchange(port, upgradeRequest(`/socket.io/?EIO=4&transport=websocket&sid=${sid}`))
  assert.match(refused.text, /^HTTP\/1\.1 400 [^]*Session ID unknown/)
  assert.ok(await eventually(() => sessions.get(sid) === undefined))
})

test('sticky engineIo: the end of a session\'s websocket tunnel forgets the session', async (t) => {
  const nodes = await socketIoCluster(t, 3)
  const { url, gateway } = await stickyGateway(t, nodes, { engineIo: true })
  const socket = socketIoClient(t, url, { transports: ['polling', 'websocket'] })
  assert.ok(await connected(socket))
  assert.ok(await eventually(() => socket.io.engine.transport.name === 'websocket'), 'the session upgraded')
  const sid = socket.io.engine.id
  const sessions = gateway.pool('io').sticky!.sessions!
  assert.deepEqual((await emitAcks(socket, 2)).filter((a) => a === undefined), [])
  assert.ok(sessions.get(sid) !== undefined)
  socket.disconnect()
  assert.ok(await eventually(() => sessions.get(sid) === undefined))
})

test('sticky engineIo: a draining node keeps its sessions and gets no new ones', async (t) => {
  const nodes = await socketIoCluster(t, 3)
  const { url, gateway } = await stickyGateway(t, nodes, { engineIo: true })
  const first = await connectAll(t, url)
  assert.equal(first.failed, 0)
  const homes = await Promise.all(first.sockets.map((s) => emitAcks(s, 1)))
  const onN0 = first.sockets.filter((_, i) => homes[i]![0] === 'n0')
  assert.ok(onN0.length > 0)

  gateway.pool('io').drain(nodes[0]!.url, { timeout: 60_000 }).catch(() => {})
  const connectionsBefore = nodes[0]!.connections()
  const still = (await Promise.all(onN0.map((s) => emitAcks(s, 3)))).flat()
  assert.ok(still.every((a) => a === 'n0'), 'sessions on the draining node stay there')

  const fresh = await connectAll(t, url)
  assert.equal(fresh.failed, 0)
  const freshHomes = (await Promise.all(fresh.sockets.map((s) => emitAcks(s, 1)))).flat()
  assert.ok(freshHomes.every((a) => a !== undefined && a !== 'n0'), 'new sessions avoid the draining node')
  assert.equal(nodes[0]!.connections(), connectionsBefore)
  assert.equal(unknownSids(nodes), 0)
})
