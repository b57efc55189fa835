import { test } from 'node:test'
import assert from 'node:assert/strict'
import { WebSocket } from 'ws'
import {
  gatewayServer, httpUpstream, nextMessage, openWs, rawUpstream, recordEvents, refusedUrl, watchForCrashes,
} from './helpers/servers.js'
import { sleep, startNode } from './helpers/cluster.js'

watchForCrashes()

/** GET `path` through the gateway; the status and body. */
async function get (url: string, path = '/'): Promise<{ status: number, body: string, retryAfter: string | null }> {
  const res = await fetch(url + path)
  return { status: res.status, body: await res.text(), retryAfter: res.headers.get('retry-after') }
}

/** Open a WebSocket through the gateway and echo one message: the text that came back. */
async function wsEcho (url: string, text: string): Promise<string> {
  const ws = new WebSocket(url.replace(/^http/, 'ws') + '/ws')
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
      ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)))
    })
    const reply = nextMessage(ws)
    ws.send(text)
    return (await reply).toString()
  } finally {
    ws.terminate()
  }
}

test('failover: an upgrade refused by the first server gets a working websocket from the second', async (t) => {
  const dead = await refusedUrl()
  const node = await startNode(t, 'b')
  const { url, gateway } = await gatewayServer(t, { upstreams: { app: { servers: [dead, node.url] } } })
  const events = recordEvents(gateway)
  const ws = await openWs(t, url + '/ws')
  const reply = nextMessage(ws)
  ws.send('hello')
  assert.equal((await reply).toString(), 'hello')
  assert.equal(events.opened[0]?.server, node.url)
  assert.deepEqual(events.errors, [], 'a failover that succeeded is no error for the client')
  const deadStatus = gateway.status().pools.app!.servers[0]!
  assert.equal(deadStatus.failures, 1)
  assert.deepEqual({ state: deadStatus.state, reason: deadStatus.reason }, { state: 'down', reason: 'passive' })
})

test('failover: a GET refused by the first server is answered by the second', async (t) => {
  const dead = await refusedUrl()
  const node = await startNode(t, 'b')
  const { url } = await gatewayServer(t, { upstreams: { app: { servers: [dead, node.url] } } })
  assert.deepEqual(await get(url), { status: 200, body: 'node b', retryAfter: null })
})

test('failover: when every server refuses, the client gets 502', async (t) => {
  const { url, gateway } = await gatewayServer(t, { upstreams: { app: { servers: [await refusedUrl(), await refusedUrl()] } } })
  const events = recordEvents(gateway)
  const res = await get(url)
  assert.equal(res.status, 502)
  assert.equal(events.errors[0]?.error.code, 'SOCKGATE_ERR_UPSTREAM_CONNECT')
  assert.deepEqual(gateway.status().pools.app!.servers.map((s) => s.failures), [1, 1], 'both servers were tried')
})

test('failover: when every server times out, the client gets 504', async (t) => {
  const silent = async () => (await rawUpstream(t, () => { /* reads the request, never answers */ })).url
  const { url, gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [await silent(), await silent()], failoverTimeout: 5_000 } },
    timeouts: { request: 150 },
  })
  const res = await get(url)
  assert.equal(res.status, 504)
  assert.deepEqual(gateway.status().pools.app!.servers.map((s) => s.failures), [1, 1], 'both servers were tried')
})

test('failover: when every server is down by health checks, the client gets 503 with Retry-After', async (t) => {
  const sick = await httpUpstream(t, (_req, res) => { res.writeHead(500).end() })
  const { url, gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [sick.url], health: { type: 'http', interval: 100, timeout: 100, fall: 1 } } },
  })
  await new Promise((resolve) => gateway.once('upstream:down', resolve))
  const res = await get(url)
  assert.equal(res.status, 503)
  assert.match(res.retryAfter ?? '', /^\d+$/)
})

test('failover: a non-101 answer to an upgrade is relayed, not retried on the next server', async (t) => {
  let asked = 0
  const refuse = async () => (await httpUpstream(t, (_req, res) => {
    asked++
    res.writeHead(403, { 'content-type': 'text/plain' }).end('no')
  })).url
  const { url } = await gatewayServer(t, { upstreams: { app: { servers: [await refuse(), await refuse()] } } })
  await assert.rejects(wsEcho(url, 'x'), /unexpected response 403/)
  assert.equal(asked, 1)
})

test('passive: refused connections keep a server out for failTimeout without active checks', async (t) => {
  const dead = await refusedUrl()
  const node = await startNode(t, 'b')
  const failTimeout = 1_000
  const { url, gateway } = await gatewayServer(t, { upstreams: { app: { servers: [dead, node.url], maxFails: 1, failTimeout } } })
  const deadServer = () => gateway.status().pools.app!.servers[0]!

  const first = await get(url)
  assert.equal(first.status, 200)
  const markedAt = Date.now()
  assert.equal(deadServer().failures, 1)
  assert.deepEqual({ state: deadServer().state, reason: deadServer().reason }, { state: 'down', reason: 'passive' })
  // Round-robin would send every other request to it; while it is out, none is.
  for (let i = 0; i < 6; i++) assert.equal((await get(url)).status, 200)
  assert.ok(Date.now() - markedAt < failTimeout, 'the requests took longer than failTimeout; the check proves nothing')
  assert.equal(deadServer().failures, 1, 'a request was sent to the server inside failTimeout')

  await sleep(failTimeout - (Date.now() - markedAt) + 50)
  assert.equal(deadServer().state, 'up', 'still out after failTimeout')
  for (let i = 0; i < 2; i++) assert.equal((await get(url)).status, 200)
  assert.equal(deadServer().failures, 2, 'after failTimeout the server is tried again')
})

test('passive: a total outage ends with the first request after one server is back', async (t) => {
  const a = await startNode(t, 'a')
  const b = await startNode(t, 'b')
  const { url, gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [a.url, b.url], maxFails: 1, failTimeout: 60_000 } },
  })
  const downs: string[] = []
  gateway.on('upstream:down', (e) => downs.push(e.server))
  await a.kill()
  await b.kill()
  assert.equal((await get(url)).status, 502)
  assert.deepEqual(downs.sort(), [a.url, b.url].sort())
  assert.equal((await get(url)).status, 502, 'still nothing there')

  await b.start()
  assert.deepEqual(await get(url), { status: 200, body: 'node b', retryAfter: null }, 'locked out for failTimeout after the outage')
  assert.equal(await wsEcho(url, 'back'), 'back')
})

// Refusing means not listening: a crash would also cut the connections the server had, which no proxy can hide.
test('flapping: a server toggling between refusing and accepting every 300 ms never causes a client-visible failure', async (t) => {
  const flappy = await startNode(t, 'a')
  const steady = await startNode(t, 'b')
  const { url, gateway } = await gatewayServer(t, {
    // A short failTimeout so the flapping server keeps being tried, in every state it passes through.
    upstreams: { app: { servers: [flappy.url, steady.url], maxFails: 1, failTimeout: 100 } },
  })
  const events = recordEvents(gateway)
  const run = { flapping: true }
  const flapper = (async () => {
    while (run.flapping) {
      await sleep(300)
      if (flappy.paused) await flappy.resume()
      else flappy.pause()
    }
    await flappy.resume()
  })()
  const seen = new Set<string>()
  const failures: string[] = []
  const deadline = Date.now() + 3_000
  for (let i = 0; i < 400 && Date.now() < deadline; i++) {
    try {
      if (i % 4 === 3) {
        assert.equal(await wsEcho(url, `m${i}`), `m${i}`)
      } else {
        const res = await get(url)
        if (res.status !== 200) failures.push(`request ${i}: ${res.status}`)
        else seen.add(res.body)
      }
    } catch (err) {
      failures.push(`request ${i}: ${(err as Error).message}`)
    }
    await sleep(5)
  }
  run.flapping = false
  await flapper
  assert.deepEqual(failures, [])
  assert.deepEqual(events.errors.map((e) => e.error.code), [])
  assert.ok(gateway.status().pools.app!.servers[0]!.failures > 0, 'the flapping server never refused a request: nothing was failed over')
  assert.ok(seen.has('node a') && seen.has('node b'), `both servers answered while up: ${[...seen].join(', ')}`)
})
