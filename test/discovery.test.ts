import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import type net from 'node:net'
import type { AddressInfo } from 'node:net'
import { WebSocket, WebSocketServer } from 'ws'
import { engineIoId, type DiscoverErrorEvent, type GatewayOptions, type Logger } from '../src/index.js'
import type { UpstreamStateEvent } from '../src/log.js'
import { startDnsServer, type DnsServer } from './helpers/dns-server.js'
import { eventually, gatewayServer, nextMessage, openWs, recordEvents, watchForCrashes, wsClosedWithin } from './helpers/servers.js'
import { sleep } from './helpers/cluster.js'

watchForCrashes()

const NAME = 'socket-nodes.default.svc.cluster.local'

/** An upstream on one address: `GET /` answers `node <host>`, `/health` 200 or 503, and a `ws` echo takes upgrades. */
interface EchoNode {
  readonly host: string
  readonly url: string
  /** Plain requests answered so far. */
  readonly requests: number
  healthy: boolean
}

/** Listen on `host:port`; rejects with the error (EADDRINUSE) instead of throwing later. */
function listenOn (server: http.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve((server.address() as AddressInfo).port)
    })
  })
}

function echoServer (t: TestContext, host: string, port: number): { server: http.Server, node: EchoNode } {
  const sockets = new Set<net.Socket>()
  const node = {
    host,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    requests: 0,
    healthy: true,
  }
  const server = http.createServer((req, res) => {
    if (req.url === '/health') return res.writeHead(node.healthy ? 200 : 503).end()
    node.requests++
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`node ${host}`)
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  const wss = new WebSocketServer({ server })
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })))
  t.after(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy()
    wss.close()
    server.close(() => resolve())
  }))
  return { server, node }
}

/**
 * Upstreams on distinct loopback addresses sharing one port, as A records
 * need (they carry no port). The port comes from the first listen on port 0;
 * should another address already hold it, every server closes and a new
 * port is tried (bounded).
 */
async function echoNodes (t: TestContext, hosts: readonly string[]): Promise<{ port: number, nodes: EchoNode[] }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const servers: http.Server[] = []
    try {
      let port = 0
      const nodes: EchoNode[] = []
      for (const host of hosts) {
        const server = http.createServer()
        servers.push(server)
        port = await listenOn(server, host, port)
      }
      for (const server of servers) server.close()
      // Listening again on the same addresses and port, now with handlers and cleanup attached.
      for (const host of hosts) {
        const { server, node } = echoServer(t, host, port)
        await listenOn(server, host, port)
        nodes.push(node)
      }
      return { port, nodes }
    } catch (err) {
      for (const server of servers) server.close()
      if ((err as { code?: string }).code !== 'EADDRINUSE') throw err
    }
  }
  throw new Error('no port free on every address')
}

/** A gateway whose pool `default` follows `dns` for NAME, with membership events recorded. */
async function discoveringGateway (t: TestContext, dns: DnsServer, discover: Record<string, unknown>, options: Partial<GatewayOptions> = {}) {
  const g = await gatewayServer(t, { discover: { dns: NAME, interval: 100, resolver: [dns.address], ...discover }, ...options } as GatewayOptions)
  const added: UpstreamStateEvent[] = []
  const removed: UpstreamStateEvent[] = []
  const failures: DiscoverErrorEvent[] = []
  g.gateway.on('upstream:added', (e) => added.push(e))
  g.gateway.on('upstream:removed', (e) => removed.push(e))
  g.gateway.on('discover:error', (e) => failures.push(e))
  return { ...g, events: recordEvents(g.gateway), added, removed, failures }
}

/** The servers of pool `default` as `url → state`. */
function members (gateway: { status: () => { pools: Record<string, { servers: Array<{ url: string, state: string }> } | undefined> } }): Record<string, string> {
  return Object.fromEntries((gateway.status().pools.default?.servers ?? []).map((s) => [s.url, s.state]))
}

/** Send `text` and wait for its echo (false when the tunnel closed first). */
async function echoes (ws: WebSocket, text: string): Promise<boolean> {
  if (ws.readyState !== WebSocket.OPEN) return false
  const reply = nextMessage(ws)
  ws.send(text)
  return (await reply.catch(() => Buffer.from(''))).toString() === text
}

async function get (url: string): Promise<{ status: number, body: string, retryAfter: string | null }> {
  const res = await fetch(url)
  return { status: res.status, body: await res.text(), retryAfter: res.headers.get('retry-after') }
}

// A and AAAA

test('discover: the pool is every A and AAAA address on the port, and requests reach each of them', async (t) => {
  const dns = await startDnsServer(t)
  const { port, nodes } = await echoNodes(t, ['127.0.0.2', '::1'])
  dns.set(NAME, { A: ['127.0.0.2'], AAAA: ['::1'] })
  const { gateway, url, added } = await discoveringGateway(t, dns, { port })
  assert.ok(await eventually(() => Object.keys(members(gateway)).length === 2), JSON.stringify(members(gateway)))
  assert.deepEqual(members(gateway), { [nodes[0]!.url]: 'up', [nodes[1]!.url]: 'up' })
  assert.deepEqual(added.map((e) => [e.server, e.name, e.reason]).sort(), [[nodes[0]!.url, null, 'discovered'], [nodes[1]!.url, null, 'discovered']].sort())
  const bodies = new Set<string>()
  for (let i = 0; i < 4; i++) bodies.add((await get(url + '/')).body)
  assert.deepEqual([...bodies].sort(), ['node 127.0.0.2', 'node ::1'])
})

test('discover: a name with A records only is an answer (no AAAA is no failure)', async (t) => {
  const dns = await startDnsServer(t)
  const { port, nodes } = await echoNodes(t, ['127.0.0.2'])
  dns.set(NAME, { A: ['127.0.0.2'] })
  const { gateway, failures } = await discoveringGateway(t, dns, { port })
  assert.ok(await eventually(() => members(gateway)[nodes[0]!.url] === 'up'), 'never: members(gateway)[nodes[0]!.url] === "up"')
  const asked = dns.questions
  assert.ok(await eventually(() => dns.questions >= asked + 4), 'discovery does not look up again on the interval')
  assert.deepEqual(failures, [])
})

test('discover: until DNS first answers, a pool with no configured server answers 503 with Retry-After, then serves', async (t) => {
  const dns = await startDnsServer(t)
  const { port } = await echoNodes(t, ['127.0.0.2'])
  dns.set(NAME, { A: ['127.0.0.2'] })
  dns.fail('no-answer')
  const { url, events } = await discoveringGateway(t, dns, { port })
  const before = await get(url + '/')
  assert.equal(before.status, 503)
  assert.match(before.retryAfter ?? '', /^\d+$/)
  assert.equal(events.errors[0]?.error.code, 'SOCKGATE_ERR_NO_UPSTREAM')
  dns.fail(null)
  let served = false
  for (let i = 0; i < 100 && !served; i++) {
    served = (await get(url + '/')).status === 200
    if (!served) await sleep(50)
  }
  assert.ok(served, 'the pool never got its discovered server')
})

// Membership under load

test('discover: a server that leaves the answer drains: no other tunnel is lost, its own run until drainTimeout, then end drained', async (t) => {
  const dns = await startDnsServer(t)
  const hosts = ['127.0.0.2', '127.0.0.3', '127.0.0.4']
  const { port, nodes } = await echoNodes(t, hosts)
  dns.set(NAME, { A: hosts })
  const drainTimeout = 1_500
  const { gateway, url, events, removed } = await discoveringGateway(t, dns, { port, drainTimeout })
  assert.ok(await eventually(() => Object.values(members(gateway)).filter((s) => s === 'up').length === 3), 'never: Object.values(members(gateway)).filter((s) => s === "up").length === 3')

  // 30 live tunnels, 10 on each server (round-robin), each echoing every round.
  const tunnels: Array<{ ws: WebSocket, server: string }> = []
  for (let i = 0; i < 30; i++) {
    const ws = await openWs(t, url + '/ws')
    tunnels.push({ ws, server: events.opened.at(-1)!.server })
  }
  const leaving = nodes[2]!.url
  const onLeaving = tunnels.filter((x) => x.server === leaving)
  const staying = tunnels.filter((x) => x.server !== leaving)
  assert.equal(onLeaving.length, 10)
  const round = async (n: number): Promise<boolean[]> => Promise.all(tunnels.map((x, i) => echoes(x.ws, `round ${n} tunnel ${i}`)))
  assert.ok((await round(0)).every(Boolean), 'false: (await round(0)).every(Boolean)')

  dns.set(NAME, { A: hosts.slice(0, 2) })
  assert.ok(await eventually(() => removed.length === 1), 'no upstream:removed')
  const leftAt = Date.now()
  assert.deepEqual([removed[0]!.server, removed[0]!.reason], [leaving, 'left-dns'])
  assert.equal(members(gateway)[leaving], 'draining')

  // During the drain: every tunnel echoes, new tunnels go to the members only.
  for (let n = 1; n <= 5; n++) {
    assert.ok((await round(n)).every(Boolean), `a tunnel stopped echoing in round ${n}`)
    await sleep(30)
  }
  const opened = events.opened.length
  const fresh: WebSocket[] = []
  for (let i = 0; i < 10; i++) fresh.push(await openWs(t, url + '/ws'))
  assert.ok(events.opened.slice(opened).every((e) => e.server !== leaving), 'new work went to the leaving server')
  assert.ok(Date.now() - leftAt < drainTimeout, 'the checks took longer than the drain window; they prove nothing')

  // At drainTimeout the leaving server's tunnels end, as drained; nothing else does.
  for (const x of onLeaving) assert.ok(await wsClosedWithin(x.ws, 5_000), 'a tunnel of the leaving server outlived drainTimeout')
  assert.ok(Date.now() - leftAt >= drainTimeout - 50, 'the leaving server\'s tunnels ended before drainTimeout')
  assert.ok(await eventually(() => events.closed.length >= 10), 'never: events.closed.length >= 10')
  assert.deepEqual(events.closed.map((e) => [e.server, e.reason]), onLeaving.map(() => [leaving, 'drained']))
  for (const [i, x] of staying.entries()) assert.ok(await echoes(x.ws, `after ${i}`), 'a tunnel of a remaining server was lost')
  for (const [i, ws] of fresh.entries()) assert.ok(await echoes(ws, `fresh ${i}`), 'a tunnel opened during the drain was lost')

  // Once empty it leaves the pool: the status page shows the members as they are now.
  assert.ok(await eventually(() => !(leaving in members(gateway))), 'never: !(leaving in members(gateway))')
  assert.deepEqual(members(gateway), { [nodes[0]!.url]: 'up', [nodes[1]!.url]: 'up' })
  assert.doesNotMatch(gateway.metrics(), new RegExp(`server="${leaving.replace(/[.]/g, '\\.')}"`))
  assert.equal(removed.length, 1)
})

test('discover: a server that joins takes new work at once, tunnels already open stay where they are', async (t) => {
  const dns = await startDnsServer(t)
  const { port, nodes } = await echoNodes(t, ['127.0.0.2', '127.0.0.3'])
  dns.set(NAME, { A: ['127.0.0.2'] })
  const { gateway, url, events, added } = await discoveringGateway(t, dns, { port })
  assert.ok(await eventually(() => members(gateway)[nodes[0]!.url] === 'up'), 'never: members(gateway)[nodes[0]!.url] === "up"')
  const old = await Promise.all([0, 1, 2].map(() => openWs(t, url + '/ws')))

  dns.set(NAME, { A: ['127.0.0.2', '127.0.0.3'] })
  assert.ok(await eventually(() => added.length === 2), 'no upstream:added')
  assert.deepEqual([added[1]!.server, added[1]!.reason], [nodes[1]!.url, 'discovered'])
  assert.equal(members(gateway)[nodes[1]!.url], 'up')
  const opened = events.opened.length
  for (let i = 0; i < 4; i++) await openWs(t, url + '/ws')
  assert.equal(events.opened.slice(opened).filter((e) => e.server === nodes[1]!.url).length, 2)
  for (const [i, ws] of old.entries()) assert.ok(await echoes(ws, `old ${i}`), 'a tunnel opened before the join was lost')
  assert.deepEqual(events.closed, [])
})

test('discover: with health, a server that joins takes work only after one passing check, whatever rise', async (t) => {
  const dns = await startDnsServer(t)
  const { port, nodes } = await echoNodes(t, ['127.0.0.2', '127.0.0.3'])
  const [first, joining] = nodes as [EchoNode, EchoNode]
  joining.healthy = false
  dns.set(NAME, { A: ['127.0.0.2'] })
  const health = { type: 'http' as const, path: '/health', interval: 200, timeout: 200, rise: 3, fall: 1 }
  const { gateway, url, added } = await discoveringGateway(t, dns, { port }, { health })
  assert.ok(await eventually(() => members(gateway)[first.url] === 'up'), 'never: members(gateway)[first.url] === "up"')
  const ups: UpstreamStateEvent[] = []
  gateway.on('upstream:up', (e) => ups.push(e))

  dns.set(NAME, { A: ['127.0.0.2', '127.0.0.3'] })
  assert.ok(await eventually(() => added.length === 2), 'never: added.length === 2')
  const joined = gateway.status().pools.default!.servers.find((s) => s.url === joining.url)!
  assert.equal(joined.state, 'down')
  // Its first check fails: it stays out, and every request goes to the server that was there.
  assert.ok(await eventually(() => gateway.status().pools.default!.servers.find((s) => s.url === joining.url)?.lastCheck?.ok === false), 'never: gateway.status().pools.default!.servers.find((s) => s.url === joining.url)?.lastCheck?.ok === false')
  for (let i = 0; i < 6; i++) assert.equal((await get(url + '/')).body, `node ${first.host}`)
  assert.equal(joining.requests, 0)

  joining.healthy = true
  assert.ok(await eventually(() => members(gateway)[joining.url] === 'up'), 'the joining server never came up')
  assert.deepEqual(ups.map((e) => [e.server, e.reason]), [[joining.url, 'passed 1 check']])
  const bodies = new Set<string>()
  for (let i = 0; i < 4; i++) bodies.add((await get(url + '/')).body)
  assert.ok(bodies.has(`node ${joining.host}`), 'the joined server takes no work')
})

test('discover: a server back in the answer while draining is taken back, its tunnels kept past drainTimeout', async (t) => {
  const dns = await startDnsServer(t)
  const { port, nodes } = await echoNodes(t, ['127.0.0.2', '127.0.0.3'])
  dns.set(NAME, { A: ['127.0.0.2', '127.0.0.3'] })
  const drainTimeout = 800
  const { gateway, url, events, added, removed } = await discoveringGateway(t, dns, { port, drainTimeout })
  assert.ok(await eventually(() => Object.keys(members(gateway)).length === 2), 'never: Object.keys(members(gateway)).length === 2')
  const tunnels = [await openWs(t, url + '/ws'), await openWs(t, url + '/ws')]
  const back = nodes[1]!.url

  dns.set(NAME, { A: ['127.0.0.2'] })
  assert.ok(await eventually(() => removed.length === 1), 'never: removed.length === 1')
  dns.set(NAME, { A: ['127.0.0.2', '127.0.0.3'] })
  assert.ok(await eventually(() => added.length === 3), 'no upstream:added for the return')
  assert.deepEqual([added[2]!.server, added[2]!.reason], [back, 'returned'])
  assert.equal(members(gateway)[back], 'up')
  await sleep(drainTimeout + 200)
  for (const [i, ws] of tunnels.entries()) assert.ok(await echoes(ws, `kept ${i}`), 'a tunnel of the returned server was ended')
  assert.deepEqual(events.closed, [])
})

// Lookup failures

test('discover: a failing lookup keeps the last good set and traffic flowing, reported once until a lookup succeeds', async (t) => {
  const dns = await startDnsServer(t)
  const { port, nodes } = await echoNodes(t, ['127.0.0.2', '127.0.0.3'])
  dns.set(NAME, { A: ['127.0.0.2', '127.0.0.3'] })
  const records: Array<{ level: string, obj: Record<string, unknown>, msg: string | undefined }> = []
  const logger = Object.fromEntries(['info', 'warn', 'error', 'debug'].map((level) => [level, (obj: Record<string, unknown>, msg?: string) => records.push({ level, obj, msg })])) as unknown as Logger
  const { gateway, url, failures, removed, events } = await discoveringGateway(t, dns, { port }, { logger })
  assert.ok(await eventually(() => Object.keys(members(gateway)).length === 2), 'never: Object.keys(members(gateway)).length === 2')
  const ws = await openWs(t, url + '/ws')

  dns.fail('SERVFAIL')
  assert.ok(await eventually(() => failures.length === 1), 'no discover:error')
  const asked = dns.questions
  assert.ok(await eventually(() => dns.questions >= asked + 6), 'discovery stopped asking')
  assert.equal(failures.length, 1, 'reported more than once')
  const [failure] = failures
  assert.equal(failure!.pool, 'default')
  assert.equal(failure!.dns, NAME)
  assert.equal(failure!.error.code, 'SOCKGATE_ERR_DISCOVERY')
  assert.equal((failure!.error.cause as { code?: string }).code, 'ESERVFAIL')
  assert.match(failure!.error.message, /keeps the 2 servers/)
  assert.deepEqual(members(gateway), { [nodes[0]!.url]: 'up', [nodes[1]!.url]: 'up' })
  const bodies = new Set<string>()
  for (let i = 0; i < 4; i++) bodies.add((await get(url + '/')).body)
  assert.equal(bodies.size, 2)
  assert.ok(await echoes(ws, 'during the failure'), 'false: await echoes(ws, "during the failure")')
  assert.equal(records.filter((r) => r.obj.code === 'SOCKGATE_ERR_DISCOVERY').length, 1)
  assert.equal(records.find((r) => r.obj.code === 'SOCKGATE_ERR_DISCOVERY')?.level, 'warn')

  // A good answer ends the failure; the next failure (a timeout this time) is reported again.
  dns.fail(null)
  assert.ok(await eventually(() => records.some((r) => r.msg === 'discovery answers again')), 'never: records.some((r) => r.msg === "discovery answers again")')
  dns.fail('no-answer')
  assert.ok(await eventually(() => failures.length === 2, 10_000), 'a failure after a recovery was not reported')
  assert.equal((failures[1]!.error.cause as { code?: string }).code, 'ETIMEOUT')
  assert.deepEqual(removed, [])
  assert.ok(await echoes(ws, 'after'), 'false: await echoes(ws, "after")')
  assert.deepEqual(events.closed, [])
})

test('discover: an empty answer (the name gone: NXDOMAIN) is not applied, and is reported once', async (t) => {
  const dns = await startDnsServer(t)
  const { port, nodes } = await echoNodes(t, ['127.0.0.2'])
  dns.set(NAME, { A: ['127.0.0.2'] })
  const { gateway, failures, removed } = await discoveringGateway(t, dns, { port })
  assert.ok(await eventually(() => members(gateway)[nodes[0]!.url] === 'up'), 'never: members(gateway)[nodes[0]!.url] === "up"')
  dns.set(NAME, null)
  assert.ok(await eventually(() => failures.length === 1), 'never: failures.length === 1')
  const asked = dns.questions
  assert.ok(await eventually(() => dns.questions >= asked + 4), 'never: dns.questions >= asked + 4')
  assert.equal(failures.length, 1)
  assert.match(failures[0]!.error.message, /found no server/)
  assert.deepEqual(members(gateway), { [nodes[0]!.url]: 'up' })
  assert.deepEqual(removed, [])
})

// SRV

test('discover: SRV records give each server its port, and the target\'s first label as its name', async (t) => {
  const dns = await startDnsServer(t)
  const { port: portA, nodes: [a] } = await echoNodes(t, ['127.0.0.2'])
  const { port: portB, nodes: [b] } = await echoNodes(t, ['127.0.0.3'])
  const srvName = `_http._tcp.${NAME}`
  dns.set(srvName, {
    SRV: [
      { port: portA, target: `web-0.${NAME}`, priority: 0, weight: 50 },
      { port: portB, target: `web-1.${NAME}`, priority: 0, weight: 50 },
    ],
  })
  dns.set(`web-0.${NAME}`, { A: ['127.0.0.2'] })
  dns.set(`web-1.${NAME}`, { A: ['127.0.0.3'] })
  const { gateway } = await gatewayServer(t, { discover: { dns: srvName, srv: true, interval: 100, resolver: [dns.address] } })
  const named = (): Array<[string, string | null]> => (gateway.status().pools.default?.servers ?? []).map((s) => [s.url, s.name])
  assert.ok(await eventually(() => named().length === 2), 'never: named().length === 2')
  assert.deepEqual(named().sort(), [[a!.url, 'web-0'], [b!.url, 'web-1']])
  assert.match(gateway.metrics(), /sockgate_upstream_up\{pool="default",server="web-0"\} 1/)
})

test('discover: a name two SRV servers would share names neither', async (t) => {
  const dns = await startDnsServer(t)
  const { port: portA, nodes: [a] } = await echoNodes(t, ['127.0.0.2'])
  const { port: portB } = await echoNodes(t, ['127.0.0.2'])
  const srvName = `_http._tcp.${NAME}`
  dns.set(srvName, { SRV: [{ port: portA, target: `web-0.${NAME}` }, { port: portB, target: `web-0.${NAME}` }] })
  dns.set(`web-0.${NAME}`, { A: [a!.host] })
  const { gateway } = await gatewayServer(t, { discover: { dns: srvName, srv: true, interval: 100, resolver: [dns.address] } })
  assert.ok(await eventually(() => (gateway.status().pools.default?.servers.length ?? 0) === 2), 'never: (gateway.status().pools.default?.servers.length ?? 0) === 2')
  assert.deepEqual(gateway.status().pools.default!.servers.map((s) => s.name), [null, null])
})

test('discover: a newcomer named like a draining server takes the name; the draining one is shown by its URL', async (t) => {
  const dns = await startDnsServer(t)
  const { port, nodes: [old, fresh] } = await echoNodes(t, ['127.0.0.2', '127.0.0.3'])
  const srvName = `_http._tcp.${NAME}`
  dns.set(srvName, { SRV: [{ port, target: `web-0.${NAME}` }] })
  dns.set(`web-0.${NAME}`, { A: ['127.0.0.2'] })
  const { gateway, url } = await gatewayServer(t, { discover: { dns: srvName, srv: true, interval: 100, resolver: [dns.address] } })
  const named = (): Record<string, string | null> => Object.fromEntries((gateway.status().pools.default?.servers ?? []).map((s) => [s.url, s.name]))
  assert.ok(await eventually(() => named()[old!.url] === 'web-0'), 'never: named()[old!.url] === "web-0"')
  // A tunnel keeps the old one draining while the pod comes back at a new address.
  await openWs(t, url + '/ws')
  dns.set(`web-0.${NAME}`, { A: ['127.0.0.3'] })
  assert.ok(await eventually(() => fresh!.url in named()), 'never: fresh!.url in named()')
  assert.deepEqual(named(), { [old!.url]: null, [fresh!.url]: 'web-0' })
})

test('discover: a session id made by engineIoId(pod name) reaches that SRV pod, and its new address once the pod moves', async (t) => {
  const dns = await startDnsServer(t)
  const { port, nodes: [web0, web1, moved] } = await echoNodes(t, ['127.0.0.2', '127.0.0.3', '127.0.0.4'])
  const srvName = `_http._tcp.${NAME}`
  dns.set(srvName, { SRV: [{ port, target: `web-0.${NAME}` }, { port, target: `web-1.${NAME}` }] })
  dns.set(`web-0.${NAME}`, { A: [web0!.host] })
  dns.set(`web-1.${NAME}`, { A: [web1!.host] })
  const { gateway, url } = await gatewayServer(t, { discover: { dns: srvName, srv: true, interval: 100, resolver: [dns.address] } })
  assert.ok(await eventually(() => (gateway.status().pools.default?.servers.length ?? 0) === 2), 'the SRV servers never joined')
  // What the pod's Socket.IO server hands out with io.engine.generateId = engineIoId(os.hostname()).
  const sid = engineIoId('web-1')()
  const poll = `${url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`
  for (let i = 0; i < 4; i++) assert.equal((await get(poll)).body, `node ${web1!.host}`)

  // The pod comes back at a new address while a tunnel keeps the old one draining: the name, and the sessions, move with it.
  await openWs(t, url + '/ws')
  await openWs(t, url + '/ws')
  dns.set(`web-1.${NAME}`, { A: [moved!.host] })
  assert.ok(await eventually(() => members(gateway)[moved!.url] === 'up'), 'the moved pod never joined')
  for (let i = 0; i < 4; i++) assert.equal((await get(poll)).body, `node ${moved!.host}`)
})

// Configured servers, close

test('discover: configured servers stay whatever DNS says, and an address of one is not added twice', async (t) => {
  const dns = await startDnsServer(t)
  const { port, nodes } = await echoNodes(t, ['127.0.0.2', '127.0.0.3'])
  const [fixed, found] = nodes as [EchoNode, EchoNode]
  dns.set(NAME, { A: ['127.0.0.2', '127.0.0.3'] })
  const { gateway, added } = await discoveringGateway(t, dns, { port }, { target: fixed.url })
  assert.ok(await eventually(() => Object.keys(members(gateway)).length === 2), 'never: Object.keys(members(gateway)).length === 2')
  assert.deepEqual(added.map((e) => e.server), [found.url])
  dns.set(NAME, { A: ['127.0.0.3'] })
  const asked = dns.questions
  assert.ok(await eventually(() => dns.questions >= asked + 4), 'never: dns.questions >= asked + 4')
  assert.deepEqual(members(gateway), { [fixed.url]: 'up', [found.url]: 'up' })
})

test('discover: close() stops the lookups', async (t) => {
  const dns = await startDnsServer(t)
  const { port } = await echoNodes(t, ['127.0.0.2'])
  dns.set(NAME, { A: ['127.0.0.2'] })
  const { gateway } = await discoveringGateway(t, dns, { port })
  assert.ok(await eventually(() => dns.questions >= 4), 'never: dns.questions >= 4')
  await gateway.close()
  const asked = dns.questions
  await sleep(400)
  assert.equal(dns.questions, asked)
})

test('discover: a server that leaves with no tunnel open leaves the pool at once', async (t) => {
  const dns = await startDnsServer(t)
  const { port, nodes } = await echoNodes(t, ['127.0.0.2', '127.0.0.3'])
  dns.set(NAME, { A: ['127.0.0.2', '127.0.0.3'] })
  const { gateway, url, removed } = await discoveringGateway(t, dns, { port })
  assert.ok(await eventually(() => Object.keys(members(gateway)).length === 2), 'never: Object.keys(members(gateway)).length === 2')
  for (let i = 0; i < 4; i++) await get(url + '/')
  dns.set(NAME, { A: ['127.0.0.2'] })
  assert.ok(await eventually(() => removed.length === 1), 'never: removed.length === 1')
  assert.ok(await eventually(() => Object.keys(members(gateway)).length === 1), 'never: Object.keys(members(gateway)).length === 1')
  assert.deepEqual(members(gateway), { [nodes[0]!.url]: 'up' })
  for (let i = 0; i < 4; i++) assert.equal((await get(url + '/')).body, `node ${nodes[0]!.host}`)
})
