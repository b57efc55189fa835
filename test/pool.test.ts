/**
 * Pools through a live gateway (issue 4): maxConns, backup and down servers,
 * and run-time changes (add, remove, markDown, drain) that never cut the
 * open tunnels of other servers.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import { WebSocket } from 'ws'
import type { ServerOption } from '../src/index.js'
import { eventually, gatewayServer, listen, rawExchange, rawUpstream, upgradeRequest } from './helpers/servers.js'
import { namedNodes, request } from './helpers/balance.js'

/** HTTP nodes that hold every request until `release()`, then answer with their name (later ones at once). */
async function holdingNodes (t: TestContext, n: number): Promise<{ urls: string[], held: () => number[], release: () => void }> {
  const pending: Array<Array<http.ServerResponse>> = []
  const urls: string[] = []
  let released = false
  for (let i = 0; i < n; i++) {
    const waiting: http.ServerResponse[] = []
    pending.push(waiting)
    const server = http.createServer((_req, res) => {
      if (released) res.end(`n${i}`)
      else waiting.push(res)
    })
    urls.push(`http://127.0.0.1:${await listen(t, server)}`)
  }
  const release = (): void => {
    released = true
    for (const [i, list] of pending.entries()) for (const res of list.splice(0)) res.end(`n${i}`)
  }
  t.after(release)
  return { urls, held: () => pending.map((l) => l.length), release }
}

/** A WebSocket through the gateway; resolves with the node that took it (it sends its name first). */
function openTunnel (t: TestContext, port: number): Promise<{ ws: WebSocket, node: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`)
    t.after(() => ws.terminate())
    ws.once('message', (data) => resolve({ ws, node: String(data) }))
    ws.once('error', reject)
    ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)))
  })
}

/** The tunnel still carries messages both ways. */
function echoes (ws: WebSocket): Promise<boolean> {
  if (ws.readyState !== WebSocket.OPEN) return Promise.resolve(false)
  return new Promise((resolve) => {
    const text = `ping-${Math.random()}`
    ws.once('message', (data) => resolve(String(data) === text))
    ws.once('close', () => resolve(false))
    ws.send(text)
  })
}

async function namesOf (port: number, n: number): Promise<string[]> {
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push((await request(port, '/')).body)
  return out
}

test('pool: a server at maxConns is passed over for the next one', async (t) => {
  const nodes = await holdingNodes(t, 2)
  const servers: ServerOption[] = [{ url: nodes.urls[0]!, maxConns: 1 }, nodes.urls[1]!]
  const { port } = await gatewayServer(t, { upstreams: { app: { servers } } })
  const answers = Array.from({ length: 5 }, () => request(port, '/'))
  assert.ok(await eventually(() => nodes.held().reduce((a, b) => a + b) === 5))
  assert.deepEqual(nodes.held(), [1, 4])
  nodes.release()
  assert.deepEqual((await Promise.all(answers)).map((a) => a.status), [200, 200, 200, 200, 200])
})

test('pool: when every server is at maxConns the gateway answers 503 with Retry-After', async (t) => {
  const nodes = await holdingNodes(t, 2)
  const { port } = await gatewayServer(t, { upstreams: { app: { servers: nodes.urls.map((url) => ({ url, maxConns: 1 })) } } })
  const held = [request(port, '/'), request(port, '/')]
  assert.ok(await eventually(() => nodes.held().join() === '1,1'))
  const refused = await request(port, '/')
  assert.equal(refused.status, 503)
  assert.equal(refused.headers['retry-after'], '5')
  nodes.release()
  assert.deepEqual((await Promise.all(held)).map((a) => a.status), [200, 200])
  assert.equal((await request(port, '/')).status, 200)
})

test('pool: open tunnels count against maxConns, and upgrades past it get 503', async (t) => {
  const nodes = await namedNodes(t, 2)
  const { port } = await gatewayServer(t, { upstreams: { app: { servers: nodes.map((n) => ({ url: n.url, maxConns: 1 })) } } })
  const a = await openTunnel(t, port)
  const b = await openTunnel(t, port)
  assert.notEqual(a.node, b.node)
  await assert.rejects(openTunnel(t, port), /status 503/)
  assert.equal((await request(port, '/')).status, 503)
  a.ws.close()
  assert.ok(await eventually(() => nodes.every((n) => n.open() <= 1) && nodes.some((n) => n.open() === 0)))
  assert.equal((await openTunnel(t, port)).node, a.node)
})

test('pool: an upgrade still waiting for its 101 counts against maxConns', async (t) => {
  let handshakes = 0
  // The node reads upgrade requests and never answers them.
  const node = await rawUpstream(t, (socket) => { socket.once('data', () => { handshakes++ }) })
  const { port } = await gatewayServer(t, { upstreams: { app: { servers: [{ url: node.url, maxConns: 1 }] } } })
  const pending = rawExchange(port, upgradeRequest('/'), 10_000)
  assert.ok(await eventually(() => handshakes === 1))
  const second = await rawExchange(port, upgradeRequest('/'))
  assert.match(second.text, /^HTTP\/1\.1 503 /)
  assert.equal(handshakes, 1)
  for (const s of node.sockets) s.destroy()
  await pending
})

test('pool: a backup server is used only while every primary is down', async (t) => {
  const nodes = await namedNodes(t, 3)
  const { port, gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [nodes[0]!.url, nodes[1]!.url, { url: nodes[2]!.url, backup: true }] } },
  })
  assert.deepEqual([...new Set(await namesOf(port, 6))].sort(), ['n0', 'n1'])
  const pool = gateway.pool('app')
  pool.markDown(nodes[0]!.url)
  assert.deepEqual([...new Set(await namesOf(port, 4))], ['n1'])
  pool.markDown(nodes[1]!.url)
  assert.deepEqual([...new Set(await namesOf(port, 4))], ['n2'])
  pool.markUp(nodes[0]!.url)
  assert.deepEqual([...new Set(await namesOf(port, 4))], ['n0'])
})

test('pool: a server configured down is never picked until marked up', async (t) => {
  const nodes = await namedNodes(t, 3)
  const { port, gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [nodes[0]!.url, { url: nodes[1]!.url, down: true }, nodes[2]!.url] } },
  })
  assert.ok(!(await namesOf(port, 8)).includes('n1'))
  assert.equal(gateway.status().pools.app!.servers[1]!.state, 'down')
  gateway.pool('app').markUp(nodes[1]!.url)
  assert.ok((await namesOf(port, 3)).includes('n1'))
})

test('pool: a server added at run time takes new work', async (t) => {
  const nodes = await namedNodes(t, 3)
  const { port, gateway } = await gatewayServer(t, { upstreams: { app: { servers: [nodes[0]!.url, nodes[1]!.url] } } })
  assert.ok(!(await namesOf(port, 4)).includes('n2'))
  gateway.pool('app').add({ url: nodes[2]!.url, weight: 2 })
  const names = await namesOf(port, 8)
  assert.equal(names.filter((n) => n === 'n2').length, 4)
})

test('pool: removing a server keeps every open tunnel, its own and the others\'', async (t) => {
  const nodes = await namedNodes(t, 3)
  const { port, gateway } = await gatewayServer(t, { upstreams: { app: { servers: nodes.map((n) => n.url) } } })
  const tunnels = [await openTunnel(t, port), await openTunnel(t, port), await openTunnel(t, port)]
  assert.deepEqual(tunnels.map((x) => x.node).sort(), ['n0', 'n1', 'n2'])
  assert.ok(gateway.pool('app').remove(nodes[1]!.url) !== undefined)
  for (const { ws, node } of tunnels) assert.ok(await echoes(ws), `the tunnel to ${node} still works`)
  const later = await Promise.all([openTunnel(t, port), openTunnel(t, port), openTunnel(t, port), openTunnel(t, port)])
  assert.ok(later.every((x) => x.node !== 'n1'))
})

test('pool: marking a server down keeps every open tunnel and sends new ones elsewhere', async (t) => {
  const nodes = await namedNodes(t, 3)
  const { port, gateway } = await gatewayServer(t, { upstreams: { app: { servers: nodes.map((n) => n.url) } } })
  const tunnels = [await openTunnel(t, port), await openTunnel(t, port), await openTunnel(t, port)]
  gateway.pool('app').markDown(nodes[0]!.url)
  for (const { ws, node } of tunnels) assert.ok(await echoes(ws), `the tunnel to ${node} still works`)
  const later = [await openTunnel(t, port), await openTunnel(t, port), await openTunnel(t, port)]
  assert.ok(later.every((x) => x.node !== 'n0'))
})

test('pool: draining a server keeps the other servers\' tunnels and resolves once its own have ended', async (t) => {
  const nodes = await namedNodes(t, 3)
  const { port, gateway } = await gatewayServer(t, { upstreams: { app: { servers: nodes.map((n) => n.url) } } })
  const tunnels = [await openTunnel(t, port), await openTunnel(t, port), await openTunnel(t, port)]
  let drained = false
  const done = gateway.pool('app').drain(nodes[0]!.url, { timeout: 60_000 }).then((ok) => { drained = ok })
  for (const { ws, node } of tunnels) assert.ok(await echoes(ws), `the tunnel to ${node} still works`)
  const later = [await openTunnel(t, port), await openTunnel(t, port)]
  assert.ok(later.every((x) => x.node !== 'n0'))
  assert.equal(drained, false)
  tunnels.find((x) => x.node === 'n0')!.ws.close()
  await done
  assert.equal(drained, true)
  for (const { ws } of [...tunnels.filter((x) => x.node !== 'n0'), ...later]) assert.ok(await echoes(ws))
})

test('pool: removing a server releases the gateway\'s kept-alive connections to it', async (t) => {
  const nodes = await namedNodes(t, 2)
  const sockets = new Set<import('node:net').Socket>()
  // A long keep-alive on the node, so only the gateway letting go can close the connection soon.
  nodes[1]!.server.keepAliveTimeout = 120_000
  nodes[1]!.server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  const { port, gateway } = await gatewayServer(t, { upstreams: { app: { servers: nodes.map((n) => n.url) } } })
  assert.ok((await namesOf(port, 2)).includes('n1'))
  assert.equal(sockets.size, 1)
  gateway.pool('app').remove(nodes[1]!.url)
  assert.ok(await eventually(() => sockets.size === 0, 3_000))
})

test('pool: a gateway that only tunnels WebSockets never loads undici; the first forwarded request does', async () => {
  // A process of its own: this one has undici loaded already (the tests use it).
  const script = `
    import http from 'node:http'
    import { createRequire } from 'node:module'
    import { WebSocket, WebSocketServer } from 'ws'
    import { createGateway } from './src/index.ts'
    const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((f) => f.includes('/node_modules/undici/'))
    const listen = (s) => new Promise((r) => s.listen(0, '127.0.0.1', () => r(s.address().port)))
    const upstream = http.createServer((_req, res) => res.end('page'))
    new WebSocketServer({ server: upstream }).on('connection', (ws) => ws.on('message', (m) => ws.send(m)))
    const gateway = createGateway({ target: 'http://127.0.0.1:' + await listen(upstream) })
    const server = http.createServer((req, res) => gateway.handleRequest(req, res))
    const port = await listen(gateway.attach(server) && server)
    const ws = new WebSocket('ws://127.0.0.1:' + port + '/')
    await new Promise((r) => ws.on('open', r))
    ws.send('hi')
    const echo = await new Promise((r) => ws.on('message', (m) => r(String(m))))
    const afterTunnel = loaded()
    const page = await (await fetch('http://127.0.0.1:' + port + '/')).text()
    console.log(JSON.stringify({ echo, afterTunnel, page, afterRequest: loaded() }))
    process.exit(0)
  `
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: process.cwd(), stdio: 'pipe' })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const killer = setTimeout(() => child.kill(), 20_000)
  const [code] = await once(child, 'exit') as [number | null]
  clearTimeout(killer)
  assert.equal(code, 0, stderr)
  assert.deepEqual(JSON.parse(stdout), { echo: 'hi', afterTunnel: false, page: 'page', afterRequest: true })
})
