import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { WebSocketServer } from 'ws'
import { buildExpress, buildFastify, buildKoa } from './adapters/apps.js'
import {
  eventually, gatewayServer, listen, maskedFrame, parseAnswer, rawClient, recordEvents, upgradeRequest, watchForCrashes,
} from './helpers/servers.js'

watchForCrashes()

test('pipelining: 400 GETs in one write are served one at a time over one upstream connection, answered in order', async (t) => {
  let open = 0
  let mostOpen = 0
  const upstream = http.createServer((req, res) => res.end(`answer ${req.url?.slice(1) ?? ''}\n`))
  upstream.on('connection', (socket) => {
    mostOpen = Math.max(mostOpen, ++open)
    socket.on('close', () => { open-- })
  })
  const { port } = await gatewayServer(t, { target: `http://127.0.0.1:${await listen(t, upstream)}` })
  const client = await rawClient(t, port)
  const count = 400
  let burst = ''
  for (let i = 0; i < count; i++) burst += `GET /${i} HTTP/1.1\r\nHost: localhost\r\n\r\n`
  client.socket.write(burst)
  assert.ok(await eventually(() => (client.text().match(/answer \d+/g) ?? []).length === count, 20_000), 'not every pipelined GET was answered')
  const order = (client.text().match(/answer (\d+)/g) ?? []).map((a) => Number(a.slice(7)))
  assert.deepEqual(order, Array.from({ length: count }, (_, i) => i))
  // undici may open a second connection while the first is still being handed back to its pool.
  assert.ok(mostOpen <= 2, `the gateway opened ${mostOpen} upstream connections for one client connection`)
})

/** An upstream whose GETs answer after 150 ms and which echoes WebSocket messages. */
async function slowGetWsUpstream (t: TestContext): Promise<string> {
  const upstream = http.createServer((req, res) => {
    // A slow answer, so the upgrade is read while it is still pending.
    setTimeout(() => res.end('the slow answer'), 150)
  })
  const wss = new WebSocketServer({ server: upstream })
  wss.on('connection', (ws) => ws.on('message', (data) => ws.send(data)))
  t.after(() => wss.close())
  return `http://127.0.0.1:${await listen(t, upstream)}`
}

/** Pipeline a GET and an upgrade on one connection to `port`: the GET's answer comes first, then the 101, then a working tunnel. */
async function assertGetThenTunnel (t: TestContext, port: number): Promise<void> {
  const client = await rawClient(t, port)
  client.socket.write('GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n' + upgradeRequest('/ws'))
  assert.ok(await eventually(() => client.text().includes('HTTP/1.1 101')), client.text())
  const text = client.text()
  assert.equal(parseAnswer(text).status, 200, 'the first answer on the wire is not the GET\'s')
  assert.ok(text.indexOf('the slow answer') < text.indexOf('HTTP/1.1 101'), text)
  const before = client.received().length
  client.socket.write(maskedFrame('through'))
  assert.ok(await eventually(() => client.received().subarray(before).includes('through')), 'the tunnel does not carry frames')
  // Gone before the app closes, which would otherwise let the open tunnel drain first.
  client.socket.destroy()
  await client.closed
}

test('pipelining: a GET and an upgrade in one write get the GET\'s answer first, then the 101 and a working tunnel', async (t) => {
  const { port, gateway } = await gatewayServer(t, { target: await slowGetWsUpstream(t) })
  const events = recordEvents(gateway)
  await assertGetThenTunnel(t, port)
  assert.equal(events.opened.length, 1)
})

for (const [name, build] of [['express', buildExpress], ['koa', buildKoa], ['fastify', buildFastify]] as const) {
  test(`pipelining: ${name}: a GET and an upgrade in one write get the GET's answer first, then the 101`, async (t) => {
    const app = await build(t, { gateway: { target: await slowGetWsUpstream(t) } })
    await assertGetThenTunnel(t, app.port)
  })
}

test('pipelining: a client that leaves while pipelined requests wait leaves nothing behind', async (t) => {
  const upstream = http.createServer((req, res) => setTimeout(() => res.end('late'), 100))
  const { port, gateway } = await gatewayServer(t, { target: `http://127.0.0.1:${await listen(t, upstream)}` })
  const client = await rawClient(t, port)
  let burst = ''
  for (let i = 0; i < 20; i++) burst += `GET /${i} HTTP/1.1\r\nHost: localhost\r\n\r\n`
  client.socket.write(burst)
  await new Promise((resolve) => setTimeout(resolve, 30))
  client.socket.destroy()
  const server = () => gateway.status().pools.default!.servers[0]!
  assert.ok(await eventually(() => server().activeRequests === 0), 'a request stayed active')
  // Only the request under way when the client left was sent; the ones waiting behind it never were.
  assert.ok(server().requests <= 2, `${server().requests} requests went upstream for a client that had left`)
})
