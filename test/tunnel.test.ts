import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'
import { WebSocket } from 'ws'
import type { GatewayOptions } from '../src/index.js'
import {
  eventually, gatewayServer, listen, maskedFrame, nextMessage, openWs, rawClient, recordEvents, switchingProtocols,
  upgradeRequest, watchForCrashes, wsClosedWithin, wsEchoUpstream,
} from './helpers/servers.js'

watchForCrashes()

type EchoOptions = Parameters<typeof wsEchoUpstream>[1]

/** A ws echo upstream behind a gateway on a plain http server, with the gateway's events recorded. */
async function echoThroughGateway (t: TestContext, upstreamOptions: EchoOptions = {}, options: Partial<GatewayOptions> = {}) {
  const upstream = await wsEchoUpstream(t, upstreamOptions)
  const g = await gatewayServer(t, { target: upstream.url, ...options })
  return { upstream, ...g, events: recordEvents(g.gateway) }
}

function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/** Sends `data` and resolves with the echo. */
async function roundTrip (ws: WebSocket, data: string | Buffer): Promise<Buffer> {
  const reply = nextMessage(ws)
  ws.send(data)
  return await reply
}

test('tunnel: a 1 MiB binary message comes back byte for byte', async (t) => {
  const { url } = await echoThroughGateway(t)
  const ws = await openWs(t, url + '/bulk')
  const payload = randomBytes(1024 * 1024)
  const echo = await roundTrip(ws, payload)
  assert.equal(echo.length, payload.length)
  assert.equal(sha256(echo), sha256(payload))
})

test('tunnel: 10,000 small messages come back in the order they were sent', async (t) => {
  const { url } = await echoThroughGateway(t)
  const ws = await openWs(t, url + '/many')
  const sent = Array.from({ length: 10_000 }, (_, i) => `m${i}`)
  const received: string[] = []
  const done = new Promise<void>((resolve) => {
    ws.on('message', (data) => {
      received.push(String(data))
      if (received.length === sent.length) resolve()
    })
  })
  for (const m of sent) ws.send(m)
  await done
  assert.deepEqual(received, sent)
})

test('tunnel: the subprotocol the upstream picks is the one the client sees', async (t) => {
  const { url } = await echoThroughGateway(t, {
    handleProtocols: (protocols) => protocols.has('superchat') ? 'superchat' : false,
  })
  const ws = await openWs(t, url + '/chat', ['chat', 'superchat'])
  assert.equal(ws.protocol, 'superchat')
  assert.equal(String(await roundTrip(ws, 'hello')), 'hello')
})

test('tunnel: permessage-deflate enabled by the upstream is negotiated end to end', async (t) => {
  const { url } = await echoThroughGateway(t, { perMessageDeflate: { threshold: 0 } })
  const ws = await openWs(t, url + '/deflate', undefined, { perMessageDeflate: true })
  assert.match(ws.extensions, /^permessage-deflate/)
  const text = 'compress me '.repeat(1000)
  assert.equal(String(await roundTrip(ws, text)), text)
})

test('tunnel: permessage-deflate stays off when the upstream does not enable it', async (t) => {
  const { url } = await echoThroughGateway(t, { perMessageDeflate: false })
  const ws = await openWs(t, url + '/plain', undefined, { perMessageDeflate: true })
  assert.equal(ws.extensions, '')
})

test('tunnel: tunnel:open and tunnel:close name the pool and server and count bytes both ways', async (t) => {
  const { url, upstream, gateway, events } = await echoThroughGateway(t)
  const ws = await openWs(t, url + '/events?room=1')
  assert.equal(events.opened.length, 1)
  assert.deepEqual(events.opened[0], { pool: 'default', server: upstream.url, name: null, path: '/events?room=1', clientAddress: '127.0.0.1' })
  assert.equal(String(await roundTrip(ws, 'x'.repeat(100))), 'x'.repeat(100))
  ws.close()
  assert.ok(await eventually(() => events.closed.length === 1), 'no tunnel:close')
  const closed = events.closed[0]!
  assert.equal(closed.pool, 'default')
  assert.equal(closed.server, upstream.url)
  assert.ok(['client-closed', 'upstream-closed'].includes(closed.reason), closed.reason)
  // 100 bytes of payload plus framing and the close handshake each way; the 101 heads are not traffic.
  assert.ok(closed.bytesIn > 100 && closed.bytesIn < 200, `bytesIn ${closed.bytesIn}`)
  assert.ok(closed.bytesOut > 100 && closed.bytesOut < 200, `bytesOut ${closed.bytesOut}`)
  assert.equal(gateway.status().tunnels.open, 0)
  const server = gateway.status().pools.default!.servers[0]!
  assert.equal(server.bytesIn, closed.bytesIn)
  assert.equal(server.bytesOut, closed.bytesOut)
  assert.equal(server.activeTunnels, 0)
})

test('tunnel: an upstream that dies mid-tunnel closes the client and the tunnel', async (t) => {
  const { url, upstream, gateway, events } = await echoThroughGateway(t)
  const ws = await openWs(t, url + '/die')
  assert.equal(String(await roundTrip(ws, 'before')), 'before')
  assert.equal(gateway.status().tunnels.open, 1)
  for (const socket of upstream.sockets) socket.destroy()
  assert.ok(await wsClosedWithin(ws), 'the client never saw its socket close')
  assert.ok(await eventually(() => gateway.status().tunnels.open === 0), 'the tunnel stayed open')
  assert.equal(events.closed.length, 1)
  assert.ok(['upstream-error', 'upstream-closed'].includes(events.closed[0]!.reason), events.closed[0]!.reason)
})

test('tunnel: a client that resets mid-tunnel gets the upstream socket closed', async (t) => {
  const { port, upstream, gateway, events } = await echoThroughGateway(t)
  const client = await rawClient(t, port)
  client.socket.write(upgradeRequest('/reset'))
  assert.ok(await eventually(() => client.text().includes('\r\n\r\n')))
  assert.match(client.text(), /^HTTP\/1\.1 101 /)
  assert.ok(await eventually(() => upstream.wss.clients.size === 1))
  client.socket.resetAndDestroy()
  assert.ok(await eventually(() => upstream.sockets.size === 0), 'the upstream socket stayed open')
  assert.ok(await eventually(() => gateway.status().tunnels.open === 0), 'the tunnel stayed open')
  assert.equal(events.closed.length, 1)
  assert.ok(['client-error', 'client-closed'].includes(events.closed[0]!.reason), events.closed[0]!.reason)
})

test('tunnel: timeouts.idle closes a quiet tunnel with reason idle-timeout', async (t) => {
  const { url, upstream, gateway, events } = await echoThroughGateway(t, {}, { timeouts: { idle: 300 } })
  const ws = await openWs(t, url + '/quiet')
  assert.ok(await wsClosedWithin(ws), 'the client never saw its socket close')
  assert.ok(await eventually(() => gateway.status().tunnels.open === 0), 'the tunnel stayed open')
  assert.ok(await eventually(() => upstream.sockets.size === 0), 'the upstream socket stayed open')
  assert.deepEqual(events.closed.map((e) => e.reason), ['idle-timeout'])
})

test('tunnel: traffic keeps a tunnel with timeouts.idle open', async (t) => {
  const { url, events } = await echoThroughGateway(t, {}, { timeouts: { idle: 1_000 } })
  const ws = await openWs(t, url + '/busy')
  // Eight round trips 200 ms apart: the tunnel outlives one idle period because it is never quiet for one.
  for (let i = 0; i < 8; i++) {
    assert.equal(String(await roundTrip(ws, `tick ${i}`)), `tick ${i}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  assert.equal(events.closed.length, 0)
})

test('tunnel: a client that half-closes still gets the reply the upstream sends after seeing its FIN', async (t) => {
  let upstreamSawEnd = false
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    let request = ''
    let received = ''
    socket.on('data', (chunk: Buffer) => {
      if (!request.includes('\r\n\r\n')) {
        request += chunk.toString('latin1')
        if (request.includes('\r\n\r\n')) socket.write(switchingProtocols(request))
        return
      }
      received += chunk.toString('latin1')
    })
    socket.on('end', () => {
      upstreamSawEnd = true
      socket.end(`reply to ${received.length} bytes after FIN`)
    })
  })
  t.after(() => { for (const s of sockets) s.destroy() })
  const upstreamPort = await listen(t, server)
  const { port, gateway } = await gatewayServer(t, { target: `http://127.0.0.1:${upstreamPort}` })
  const events = recordEvents(gateway)
  const client = await rawClient(t, port, { allowHalfOpen: true })
  client.socket.write(upgradeRequest('/half'))
  assert.ok(await eventually(() => client.text().includes('\r\n\r\n')))
  const frame = maskedFrame('last words')
  client.socket.end(frame)
  assert.ok(await eventually(() => client.isClosed()), `the client socket stayed open, got ${JSON.stringify(client.text())}`)
  assert.equal(upstreamSawEnd, true)
  assert.ok(client.text().endsWith(`reply to ${frame.length} bytes after FIN`), JSON.stringify(client.text()))
  assert.ok(await eventually(() => gateway.status().tunnels.open === 0), 'the tunnel stayed open')
  assert.equal(events.closed.length, 1)
})

test('tunnel: close({ drain }) lets an open websocket work, refuses new upgrades 503, then ends it', async (t) => {
  const { url, gateway, events } = await echoThroughGateway(t)
  const ws = await openWs(t, url + '/draining')
  const closing = gateway.close({ drain: 500 })
  assert.equal(String(await roundTrip(ws, 'still here')), 'still here')
  const refused = await new Promise<number>((resolve, reject) => {
    const late = new WebSocket(url.replace(/^http/, 'ws') + '/late')
    t.after(() => { late.terminate() })
    late.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); res.resume() })
    late.on('open', () => reject(new Error('a new upgrade was tunnelled while draining')))
    late.on('error', () => {})
  })
  assert.equal(refused, 503)
  await closing
  assert.equal(gateway.status().tunnels.open, 0)
  assert.ok(await wsClosedWithin(ws), 'the client never saw its socket close')
  assert.deepEqual(events.closed.map((e) => e.reason), ['drained'])
})

test('tunnel: close({ drain }) resolves early once the last tunnel has closed by itself', async (t) => {
  const { url, gateway, events } = await echoThroughGateway(t)
  const ws = await openWs(t, url + '/leaving')
  let resolved = false
  const closing = gateway.close({ drain: 60_000 }).then(() => { resolved = true })
  ws.close()
  // The drain window is a minute: only the tunnel's own close can resolve close() within the default wait.
  assert.ok(await eventually(() => resolved), 'close() waited for the whole drain window')
  await closing
  assert.equal(events.closed.length, 1)
  assert.notEqual(events.closed[0]!.reason, 'drained')
})

test('tunnel: status() counts the bytes of a tunnel that is still open', async (t) => {
  const { url, gateway } = await echoThroughGateway(t)
  const ws = await openWs(t, url + '/live')
  const payload = randomBytes(64 * 1024)
  await roundTrip(ws, payload)
  const [server] = gateway.status().pools.default!.servers
  assert.equal(gateway.status().tunnels.open, 1)
  assert.ok(server!.bytesIn >= payload.length, `bytesIn ${server!.bytesIn}`)
  assert.ok(server!.bytesOut >= payload.length, `bytesOut ${server!.bytesOut}`)
})
