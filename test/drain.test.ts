import { test } from 'node:test'
import assert from 'node:assert/strict'
import { WebSocket } from 'ws'
import {
  eventually, gatewayServer, nextMessage, openWs, parseAnswer, rawExchange, recordEvents, upgradeRequest, watchForCrashes, wsClosed,
} from './helpers/servers.js'
import { sleep, startNode } from './helpers/cluster.js'

watchForCrashes()

/** Send `text` on an open websocket and return the echo. */
async function echo (ws: WebSocket, text: string): Promise<string> {
  const reply = nextMessage(ws)
  ws.send(text)
  return (await reply).toString()
}

test('close({ drain }): an open websocket keeps working in the drain window, new work gets 503, nothing is left open after', async (t) => {
  const node = await startNode(t, 'a')
  const { url, port, gateway } = await gatewayServer(t, { target: node.url })
  const events = recordEvents(gateway)
  const ws = await openWs(t, url + '/ws')
  assert.equal(await echo(ws, 'before'), 'before')

  const drain = 2_000
  const closing = gateway.close({ drain })
  const startedAt = Date.now()
  assert.equal(gateway.closed, true)
  const upgrade = parseAnswer((await rawExchange(port, upgradeRequest('/ws'))).text)
  assert.equal(upgrade.status, 503)
  assert.match(upgrade.headers['retry-after'] ?? '', /^\d+$/)
  assert.equal((await fetch(url + '/')).status, 503)
  for (let i = 0; i < 3; i++) {
    assert.equal(await echo(ws, `during ${i}`), `during ${i}`)
    await sleep(50)
  }
  assert.ok(Date.now() - startedAt < drain, 'the checks took longer than the drain window; they prove nothing')
  assert.equal(ws.readyState, WebSocket.OPEN)

  await closing
  await wsClosed(ws)
  assert.equal(gateway.status().tunnels.open, 0)
  assert.deepEqual(events.closed.map((e) => e.reason), ['drained'])
  assert.equal(gateway.status().pools.default!.servers[0]!.activeTunnels, 0)
})

test('close({ drain }): resolves as soon as the last tunnel closes on its own', async (t) => {
  const node = await startNode(t, 'a')
  const { url, gateway } = await gatewayServer(t, { target: node.url })
  const events = recordEvents(gateway)
  const ws = await openWs(t, url + '/ws')
  let done = false
  const closing = gateway.close({ drain: 60_000 }).then(() => { done = true })
  await sleep(50)
  assert.equal(done, false)
  ws.close()
  await closing
  assert.equal(events.closed.length, 1)
  assert.ok(!['drained', 'gateway-closed'].includes(events.closed[0]!.reason), `ended by the gateway: ${events.closed[0]!.reason}`)
})

test('pool.drain(): the server takes no new sessions, its tunnels run until the timeout, then end', async (t) => {
  const a = await startNode(t, 'a')
  const b = await startNode(t, 'b')
  const { url, gateway } = await gatewayServer(t, { upstreams: { app: { servers: [a.url, b.url] } } })
  const events = recordEvents(gateway)
  const onA = await openWs(t, url + '/ws')
  assert.equal(events.opened[0]?.server, a.url, 'round-robin starts with the first server')

  const timeout = 2_000
  let drained = false
  const draining = gateway.pool('app').drain(a.url, { timeout }).then((ok) => { drained = ok })
  const snap = gateway.status().pools.app!.servers[0]!
  assert.deepEqual({ state: snap.state, reason: snap.reason }, { state: 'draining', reason: 'draining' })

  // New sessions all go to b, while the tunnel to a still carries data.
  for (let i = 0; i < 4; i++) {
    const ws = await openWs(t, url + '/ws')
    assert.equal(await echo(ws, `new ${i}`), `new ${i}`)
    ws.close()
  }
  assert.deepEqual(events.opened.slice(1).map((e) => e.server), [b.url, b.url, b.url, b.url])
  for (let i = 0; i < 4; i++) assert.equal((await (await fetch(url + '/')).text()), 'node b')
  assert.equal(await echo(onA, 'still here'), 'still here')
  assert.equal(drained, false)

  await draining
  assert.equal(drained, true)
  await wsClosed(onA)
  assert.deepEqual(events.closed.filter((e) => e.server === a.url).map((e) => e.reason), ['drained'])
  assert.equal(gateway.status().pools.app!.servers[0]!.activeTunnels, 0)
  assert.equal(gateway.status().pools.app!.servers[0]!.state, 'draining', 'a drained server stays out until undrain()')
})

test('pool.drain(): resolves at once when the server has no tunnels, and false for an unknown server', async (t) => {
  const a = await startNode(t, 'a')
  const { gateway } = await gatewayServer(t, { target: a.url })
  assert.equal(await gateway.pool('default').drain(a.url, { timeout: 60_000 }), true)
  assert.equal(await gateway.pool('default').drain('http://127.0.0.1:1'), false)
})

test('pool.drain(): resolves early when the last tunnel of the server closes on its own', async (t) => {
  const a = await startNode(t, 'a')
  const b = await startNode(t, 'b')
  const { url, gateway } = await gatewayServer(t, { upstreams: { app: { servers: [a.url, b.url] } } })
  const onA = await openWs(t, url + '/ws')
  const onB = await openWs(t, url + '/ws')
  const draining = gateway.pool('app').drain(a.url, { timeout: 60_000 })
  onA.close()
  assert.equal(await draining, true)
  assert.equal(onB.readyState, WebSocket.OPEN, 'the other server\'s tunnel was touched')
})

test('pool.undrain(): a drained server takes new sessions again', async (t) => {
  const a = await startNode(t, 'a')
  const b = await startNode(t, 'b')
  const { url, gateway } = await gatewayServer(t, { upstreams: { app: { servers: [a.url, b.url] } } })
  await gateway.pool('app').drain(a.url)
  for (let i = 0; i < 2; i++) assert.equal(await (await fetch(url + '/')).text(), 'node b')
  assert.equal(gateway.pool('app').undrain(a.url), true)
  assert.equal(gateway.status().pools.app!.servers[0]!.state, 'up')
  const bodies = new Set<string>()
  for (let i = 0; i < 4; i++) bodies.add(await (await fetch(url + '/')).text())
  assert.ok(bodies.has('node a'))
})

test('pool.drain(): a rolling restart of every node drops no new client', async (t) => {
  const nodes = [await startNode(t, 'a'), await startNode(t, 'b'), await startNode(t, 'c')]
  const { url, gateway } = await gatewayServer(t, { upstreams: { app: { servers: nodes.map((n) => n.url) } } })
  const pool = gateway.pool('app')
  const failures: string[] = []
  const run = { stop: false }
  const traffic = (async () => {
    while (!run.stop) {
      const res = await fetch(url + '/').catch((err: Error) => ({ status: err.message }))
      if (res.status !== 200) failures.push(String(res.status))
      await sleep(5)
    }
  })()
  for (const node of nodes) {
    await pool.drain(node.url, { timeout: 200 })
    // Requests already sent to it finish before it goes away.
    assert.ok(await eventually(() => gateway.status().pools.app!.servers.find((s) => s.url === node.url)!.activeRequests === 0))
    await node.kill()
    await node.start()
    pool.undrain(node.url)
  }
  run.stop = true
  await traffic
  assert.deepEqual(failures, [])
})

test('pool.drain(): a timeout out of range is refused with a RangeError, and the server keeps taking new work', async (t) => {
  const node = await startNode(t, 'a')
  const { gateway } = await gatewayServer(t, { target: node.url })
  const pool = gateway.pool('default')
  for (const timeout of [-1, 1.5, 2 ** 31]) {
    assert.throws(() => pool.drain(node.url, { timeout }), RangeError, String(timeout))
  }
  assert.equal(gateway.status().pools.default!.servers[0]!.state, 'up')
})
