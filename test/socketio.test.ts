import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { io as connect, type Socket as ClientSocket, type ManagerOptions, type SocketOptions } from 'socket.io-client'
import { eventually, gatewayServer, recordEvents, socketIoUpstream, watchForCrashes } from './helpers/servers.js'

watchForCrashes()

/** A Socket.IO 4 upstream (echo with ack, broadcast on request) behind a gateway on a plain http server. */
async function socketIoThroughGateway (t: TestContext) {
  const upstream = await socketIoUpstream(t)
  upstream.io.on('connection', (socket) => {
    socket.on('echo', (data: unknown, ack: (reply: unknown) => void) => ack(data))
    socket.on('shout', (text: string) => upstream.io.emit('heard', text))
  })
  const g = await gatewayServer(t, { target: upstream.url })
  return { upstream, ...g, events: recordEvents(g.gateway) }
}

/** A connected socket.io-client through the gateway; closed when the test ends. */
async function client (t: TestContext, url: string, opts: Partial<ManagerOptions & SocketOptions> = {}): Promise<ClientSocket> {
  const socket = connect(url, { forceNew: true, reconnection: false, ...opts })
  t.after(() => { socket.disconnect() })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('connect_error', reject)
  })
  return socket
}

/** The transport the client's engine uses right now. */
function transportOf (socket: ClientSocket): string {
  return socket.io.engine.transport.name
}

test('socket.io: a websocket-only client connects and gets its ack through the gateway', async (t) => {
  const { url, gateway, events } = await socketIoThroughGateway(t)
  const socket = await client(t, url, { transports: ['websocket'] })
  assert.equal(transportOf(socket), 'websocket')
  assert.deepEqual(await socket.emitWithAck('echo', { hello: 'ws' }), { hello: 'ws' })
  assert.equal(gateway.status().tunnels.open, 1)
  assert.equal(events.opened.length, 1)
  assert.match(events.opened[0]!.path, /^\/socket\.io\/\?EIO=4&transport=websocket/)
})

test('socket.io: a polling-only client connects and gets its ack through the gateway without a tunnel', async (t) => {
  const { url, gateway, events } = await socketIoThroughGateway(t)
  const socket = await client(t, url, { transports: ['polling'] })
  assert.equal(transportOf(socket), 'polling')
  assert.deepEqual(await socket.emitWithAck('echo', 'over long-polling'), 'over long-polling')
  assert.equal(gateway.status().tunnels.open, 0)
  assert.equal(events.opened.length, 0)
  assert.deepEqual(events.errors, [])
})

test('socket.io: a default client starts on polling and upgrades to websocket through the gateway', async (t) => {
  const { url, gateway, events } = await socketIoThroughGateway(t)
  const socket = connect(url, { forceNew: true, reconnection: false })
  t.after(() => { socket.disconnect() })
  // The engine opens on its first transport; the upgrade may finish before Socket.IO's own 'connect'.
  const first = new Promise<string>((resolve) => socket.io.engine.once('open', () => resolve(transportOf(socket))))
  const upgraded = new Promise<string>((resolve) => socket.io.engine.once('upgrade', (transport) => resolve(transport.name)))
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('connect_error', reject)
  })
  assert.equal(await first, 'polling')
  assert.equal(await upgraded, 'websocket')
  assert.deepEqual(await socket.emitWithAck('echo', 'after upgrade'), 'after upgrade')
  assert.equal(gateway.status().tunnels.open, 1)
  assert.match(events.opened[0]!.path, /[?&]sid=/)
})

test('socket.io: 200 emits each get the right ack back', async (t) => {
  const { url } = await socketIoThroughGateway(t)
  const socket = await client(t, url, { transports: ['websocket'] })
  const sent = Array.from({ length: 200 }, (_, i) => ({ n: i, text: `message ${i}` }))
  const acks = await Promise.all(sent.map((m) => socket.emitWithAck('echo', m)))
  assert.deepEqual(acks, sent)
})

test('socket.io: 200 emits over long-polling each get the right ack back', async (t) => {
  const { url } = await socketIoThroughGateway(t)
  const socket = await client(t, url, { transports: ['polling'] })
  const sent = Array.from({ length: 200 }, (_, i) => `polled ${i}`)
  const acks = await Promise.all(sent.map((m) => socket.emitWithAck('echo', m)))
  assert.deepEqual(acks, sent)
})

test('socket.io: a binary payload comes back as the same bytes over websocket', async (t) => {
  const { url } = await socketIoThroughGateway(t)
  const socket = await client(t, url, { transports: ['websocket'] })
  const payload = randomBytes(256 * 1024)
  const echo = await socket.emitWithAck('echo', { label: 'blob', payload }) as { label: string, payload: Buffer }
  assert.equal(echo.label, 'blob')
  assert.ok(Buffer.isBuffer(echo.payload))
  assert.ok(payload.equals(echo.payload), 'the binary payload changed on the way')
})

test('socket.io: a binary payload comes back as the same bytes over long-polling', async (t) => {
  const { url } = await socketIoThroughGateway(t)
  const socket = await client(t, url, { transports: ['polling'] })
  const payload = randomBytes(64 * 1024)
  const echo = await socket.emitWithAck('echo', payload) as Buffer
  assert.ok(Buffer.isBuffer(echo))
  assert.ok(payload.equals(echo), 'the binary payload changed on the way')
})

test('socket.io: a server broadcast reaches two clients through the gateway', async (t) => {
  const { url, upstream } = await socketIoThroughGateway(t)
  const one = await client(t, url, { transports: ['websocket'] })
  const two = await client(t, url, { transports: ['polling'] })
  assert.ok(await eventually(() => upstream.io.engine.clientsCount === 2))
  const heard = [one, two].map((s) => new Promise<string>((resolve) => s.once('heard', resolve)))
  one.emit('shout', 'hello everyone')
  assert.deepEqual(await Promise.all(heard), ['hello everyone', 'hello everyone'])
})

test('socket.io: a client that disconnects leaves no tunnel open and the upstream sees it leave', async (t) => {
  const { url, upstream, gateway, events } = await socketIoThroughGateway(t)
  const socket = await client(t, url, { transports: ['websocket'] })
  assert.equal(gateway.status().tunnels.open, 1)
  const left = new Promise<string>((resolve) => {
    for (const s of upstream.io.sockets.sockets.values()) s.once('disconnect', resolve)
  })
  socket.disconnect()
  assert.equal(await left, 'client namespace disconnect')
  assert.ok(await eventually(() => gateway.status().tunnels.open === 0), 'the tunnel stayed open')
  assert.equal(events.closed.length, 1)
  assert.ok(events.closed[0]!.bytesIn > 0 && events.closed[0]!.bytesOut > 0)
  assert.ok(await eventually(() => upstream.io.engine.clientsCount === 0), 'the upstream kept the engine.io client')
})

test('socket.io: a server that disconnects a client leaves no tunnel open', async (t) => {
  const { url, upstream, gateway } = await socketIoThroughGateway(t)
  const socket = await client(t, url, { transports: ['websocket'] })
  const gone = new Promise<string>((resolve) => socket.once('disconnect', resolve))
  upstream.io.disconnectSockets(true)
  assert.equal(await gone, 'io server disconnect')
  assert.ok(await eventually(() => gateway.status().tunnels.open === 0), 'the tunnel stayed open')
})
