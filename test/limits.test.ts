import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http, { type ServerResponse } from 'node:http'
import net from 'node:net'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import type { GatewayOptions } from '../src/index.js'
import { ClientLimits, ClientState, REPORT_QUIET_MS, type Refusal } from '../src/limits.js'
import { normalizeOptions, type NormalizedPerClient } from '../src/options.js'
import {
  eventually, gatewayServer, openWs, parseAnswer, recordEvents, refusedUrl, upgradeRequest, watchForCrashes, wsClosed,
  wsEchoUpstream,
} from './helpers/servers.js'

watchForCrashes()

// The table, on plain values (explicit clock)

function table (t: TestContext, perClient: NonNullable<NonNullable<GatewayOptions['limits']>['perClient']>): ClientLimits {
  const spec = normalizeOptions({ target: 'http://127.0.0.1:1', limits: { perClient } }).limits.perClient as NormalizedPerClient
  const limits = new ClientLimits(spec)
  t.after(() => limits.stop())
  return limits
}

function admitted (result: ClientState | Refusal): ClientState {
  assert.ok(result instanceof ClientState, `refused: ${(result as Refusal).error?.message}`)
  return result
}

function refused (result: ClientState | Refusal): Refusal {
  assert.ok(!(result instanceof ClientState), 'admitted')
  return result
}

test('limits: requestsPerSecond lets burst + 1 through at once, then refuses with the seconds until a retry passes', (t) => {
  const limits = table(t, { requestsPerSecond: 2, burst: 3 })
  for (let i = 0; i < 4; i++) admitted(limits.admit('http', '192.0.2.1', 1000))
  const refusal = refused(limits.admit('http', '192.0.2.1', 1000))
  assert.equal(refusal.error.code, 'SOCKGATE_ERR_RATE_LIMITED')
  assert.equal(refusal.error.statusCode, 429)
  assert.equal(refusal.error.limit, 'requestsPerSecond')
  // One request drains every 500 ms: the next fits in half a second, sent as a whole second.
  assert.equal(refusal.error.retryAfter, 1)
  refused(limits.admit('http', '192.0.2.1', 1499))
  admitted(limits.admit('http', '192.0.2.1', 1500))
})

test('limits: the request bucket refills at the rate, and a refused request spends nothing', (t) => {
  const limits = table(t, { requestsPerSecond: 1, burst: 0 })
  admitted(limits.admit('http', '192.0.2.1', 0))
  for (let i = 0; i < 50; i++) refused(limits.admit('http', '192.0.2.1', 500))
  admitted(limits.admit('http', '192.0.2.1', 1000))
  refused(limits.admit('http', '192.0.2.1', 1000))
  admitted(limits.admit('http', '192.0.2.1', 11_000))
})

test('limits: upgradesPerMinute lets a minute\'s worth through at once and one more per 60/N seconds', (t) => {
  const limits = table(t, { upgradesPerMinute: 2 })
  admitted(limits.admit('upgrade', '192.0.2.1', 0))
  admitted(limits.admit('upgrade', '192.0.2.1', 0))
  const refusal = refused(limits.admit('upgrade', '192.0.2.1', 0))
  assert.deepEqual([refusal.error.limit, refusal.error.retryAfter], ['upgradesPerMinute', 30])
  assert.equal(refused(limits.admit('upgrade', '192.0.2.1', 20_000)).error.retryAfter, 10)
  admitted(limits.admit('upgrade', '192.0.2.1', 30_000))
  // Upgrades and requests are counted apart.
  admitted(limits.admit('http', '192.0.2.1', 30_000))
})

test('limits: connections counts work in flight, and a released slot is free again', (t) => {
  const limits = table(t, { connections: 2 })
  const a = admitted(limits.admit('http', '192.0.2.1', 0))
  admitted(limits.admit('upgrade', '192.0.2.1', 0))
  const refusal = refused(limits.admit('http', '192.0.2.1', 0))
  assert.deepEqual([refusal.error.limit, refusal.error.retryAfter], ['connections', 1])
  limits.release(a, 1)
  admitted(limits.admit('upgrade', '192.0.2.1', 2))
})

test('limits: a request refused for connections spends none of the rate', (t) => {
  const limits = table(t, { connections: 1, requestsPerSecond: 1, burst: 1 })
  const a = admitted(limits.admit('http', '192.0.2.1', 0))
  for (let i = 0; i < 10; i++) assert.equal(refused(limits.admit('http', '192.0.2.1', 0)).error.limit, 'connections')
  limits.release(a, 0)
  admitted(limits.admit('http', '192.0.2.1', 0))
})

test('limits: clients are independent; IPv4-mapped is the IPv4 client, and one IPv6 /64 is one client', (t) => {
  const limits = table(t, { connections: 1 })
  admitted(limits.admit('http', '192.0.2.1', 0))
  admitted(limits.admit('http', '192.0.2.2', 0))
  refused(limits.admit('http', '::ffff:192.0.2.1', 0))
  admitted(limits.admit('http', '2001:db8:1:2::1', 0))
  refused(limits.admit('http', '2001:db8:1:2:ffff::9', 0))
  admitted(limits.admit('http', '2001:db8:1:3::1', 0))
})

test('limits: a refused client is reported once per quiet window, every refusal counted', (t) => {
  const limits = table(t, { requestsPerSecond: 1, burst: 0 })
  admitted(limits.admit('http', '192.0.2.1', 0))
  admitted(limits.admit('http', '192.0.2.2', 0))
  const reports = [0, 10, 20, 30].map((now) => refused(limits.admit('http', '192.0.2.1', now)).report)
  assert.deepEqual(reports, [true, false, false, false])
  assert.equal(refused(limits.admit('http', '192.0.2.2', 30)).report, true, 'another client is reported on its own')
  admitted(limits.admit('http', '192.0.2.1', REPORT_QUIET_MS - 500))
  assert.equal(refused(limits.admit('http', '192.0.2.1', REPORT_QUIET_MS - 500)).report, false)
  assert.equal(refused(limits.admit('http', '192.0.2.1', REPORT_QUIET_MS)).report, true)
  assert.equal(limits.snapshot().refused.requestsPerSecond, 7)
})

test('limits: the table holds maxClients at most; an idle client seen once is forgotten first', (t) => {
  const limits = table(t, { requestsPerSecond: 1, burst: 0, maxClients: 3 })
  for (const a of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) limits.release(admitted(limits.admit('http', a, 0)), 0)
  refused(limits.admit('http', '192.0.2.1', 1))
  for (let i = 10; i < 1000; i++) limits.release(admitted(limits.admit('http', `198.51.${i >> 8}.${i & 255}`, 2)), 2)
  assert.equal(limits.snapshot().clients, 3)
  // 192.0.2.2 was forgotten with its spent bucket: it starts afresh (the price of a bounded table); 192.0.2.1, seen
  // twice, was kept, and its bucket still refuses it.
  refused(limits.admit('http', '192.0.2.1', 3))
  admitted(limits.admit('http', '192.0.2.2', 3))
})

test('limits: a client that keeps coming back keeps its state through a flood of one-time addresses', (t) => {
  const limits = table(t, { requestsPerSecond: 1, burst: 0, maxClients: 200 })
  limits.release(admitted(limits.admit('http', '192.0.2.1', 0)), 0)
  for (let i = 0; i < 5000; i++) {
    limits.release(admitted(limits.admit('http', `198.51.${i >> 8}.${i & 255}`, 1)), 1)
    // Forgotten, it would be admitted afresh; remembered, its spent bucket refuses it.
    if (i % 20 === 0) refused(limits.admit('http', '192.0.2.1', 1))
  }
  assert.equal(limits.snapshot().clients, 200)
})

test('limits: a client with work in flight is never forgotten; a full table of them refuses newcomers (maxClients)', (t) => {
  const limits = table(t, { connections: 1, maxClients: 2 })
  const a = admitted(limits.admit('upgrade', '192.0.2.1', 0))
  admitted(limits.admit('upgrade', '192.0.2.2', 0))
  const refusal = refused(limits.admit('upgrade', '192.0.2.3', 0))
  assert.deepEqual([refusal.error.limit, refusal.error.retryAfter, refusal.report], ['maxClients', 1, true])
  assert.equal(refused(limits.admit('upgrade', '192.0.2.4', 0)).report, false, 'table-full refusals are reported once per window too')
  // The busy clients kept their counts: each still has its one slot taken.
  assert.equal(refused(limits.admit('upgrade', '192.0.2.1', 0)).error.limit, 'connections')
  limits.release(a, 1)
  admitted(limits.admit('upgrade', '192.0.2.3', 2))
  assert.equal(limits.snapshot().clients, 2)
})

test('limits: the sweep forgets clients idle past expireMs and keeps busy and recent ones', (t) => {
  const limits = table(t, { connections: 5, requestsPerSecond: 0.01, burst: 0 })
  // One request per 100 s: its bucket takes 100 s to drain, so forgetting sooner would reset it.
  assert.equal(limits.expireMs, 100_000)
  limits.release(admitted(limits.admit('http', '192.0.2.1', 0)), 0)
  admitted(limits.admit('http', '192.0.2.2', 0))
  limits.release(admitted(limits.admit('http', '192.0.2.3', 50_000)), 50_000)
  limits.sweep(99_999)
  assert.equal(limits.snapshot().clients, 3)
  limits.sweep(100_000)
  assert.equal(limits.snapshot().clients, 2, 'the idle client is gone, the busy one stays')
  limits.sweep(1_000_000)
  assert.equal(limits.snapshot().clients, 1)
  assert.equal(table(t, { connections: 1 }).expireMs, REPORT_QUIET_MS)
})

// Through a gateway: real upstream, real clients

/** A ws echo upstream counting the TCP connections, requests and upgrades it gets; `/hold` requests wait for `release()`. */
async function countedUpstream (t: TestContext) {
  const up = await wsEchoUpstream(t)
  const seen = { connections: 0, requests: 0, upgrades: 0 }
  const held: ServerResponse[] = []
  up.server.on('connection', () => { seen.connections++ })
  up.server.prependListener('upgrade', () => { seen.upgrades++ })
  up.server.removeAllListeners('request')
  up.server.on('request', (req, res) => {
    seen.requests++
    if (req.url?.startsWith('/hold') === true) held.push(res)
    else res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
  })
  return { url: up.url, seen, held: () => held.length, release: () => { for (const res of held.splice(0)) res.end('released') } }
}

async function limitedGateway (t: TestContext, options: Partial<GatewayOptions>) {
  const up = await countedUpstream(t)
  const g = await gatewayServer(t, { target: up.url, ...options })
  return { ...g, up, events: recordEvents(g.gateway) }
}

/** GET `path` with a fresh connection each time; status, Retry-After and body. */
async function get (url: string, path = '/x', headers: Record<string, string> = {}) {
  const res = await fetch(`${url}${path}`, { headers: { connection: 'close', ...headers } })
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.text() }
}

/** Retry `attempt` every 20 ms until it holds, for up to `ms`: for a state the gateway reaches on its own (a slot given back). */
async function until (attempt: () => Promise<boolean>, ms = 3_000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await attempt()) return true
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return false
}

/** A raw upgrade's answer head, status and headers; the connection is dropped once the head is in (a 101 stays open otherwise). */
function upgrade (port: number, extra: Record<string, string> = {}): Promise<ReturnType<typeof parseAnswer>> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let text = ''
    const done = (): void => {
      socket.destroy()
      resolve(parseAnswer(text))
    }
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1')
      if (text.includes('\r\n\r\n')) done()
    })
    socket.on('close', done)
    socket.on('error', reject)
    socket.write(upgradeRequest('/ws', extra))
  })
}

test('limits: past requestsPerSecond an HTTP request gets 429 with Retry-After, and the upstream never sees it', async (t) => {
  const { url, up, events } = await limitedGateway(t, { limits: { perClient: { requestsPerSecond: 1, burst: 1 } } })
  assert.equal((await get(url)).status, 200)
  assert.equal((await get(url)).status, 200)
  const limited = await get(url)
  assert.deepEqual([limited.status, limited.retryAfter], [429, '1'])
  assert.match(limited.body, /past limits\.perClient\.requestsPerSecond \(1 per second, burst 1\)/)
  assert.equal(up.seen.requests, 2)
  assert.deepEqual(events.errors.map((e) => [e.error.code, e.kind, e.clientAddress]), [['SOCKGATE_ERR_RATE_LIMITED', 'http', '127.0.0.1']])
})

test('limits: after the seconds Retry-After gave, the request passes', async (t) => {
  const { url } = await limitedGateway(t, { limits: { perClient: { requestsPerSecond: 2, burst: 0 } } })
  assert.equal((await get(url)).status, 200)
  const limited = await get(url)
  assert.equal(limited.status, 429)
  await new Promise((resolve) => setTimeout(resolve, Number(limited.retryAfter) * 1000))
  assert.equal((await get(url)).status, 200)
})

test('limits: connections caps requests in flight; a finished request frees its slot', async (t) => {
  const { url, up } = await limitedGateway(t, { limits: { perClient: { connections: 1 } } })
  const first = get(url, '/hold')
  assert.ok(await eventually(() => up.held() === 1))
  const limited = await get(url)
  assert.deepEqual([limited.status, limited.retryAfter], [429, '1'])
  assert.equal(up.seen.requests, 1)
  up.release()
  assert.equal((await first).body, 'released')
  assert.equal((await get(url)).status, 200)
})

test('limits: a request the client aborts frees its slot', async (t) => {
  const { url, up, gateway } = await limitedGateway(t, { limits: { perClient: { connections: 1 } } })
  const aborted = new AbortController()
  const first = fetch(`${url}/hold`, { signal: aborted.signal }).catch(() => 'aborted')
  assert.ok(await eventually(() => up.held() === 1))
  assert.equal((await get(url)).status, 429)
  aborted.abort()
  assert.equal(await first, 'aborted')
  // The slot is back once the gateway has seen the client go.
  assert.ok(await until(async () => (await get(url)).status === 200))
  assert.equal(gateway.status().perClient?.clients, 1)
  up.release()
})

test('limits: a failed request (upstream refused, 502) frees its slot', async (t) => {
  const dead = await refusedUrl()
  const g = await gatewayServer(t, { target: dead, maxFails: 0, limits: { perClient: { connections: 1 } } })
  for (let i = 0; i < 3; i++) assert.equal((await get(g.url)).status, 502)
  for (let i = 0; i < 3; i++) assert.equal((await upgrade(g.port)).status, 502)
})

test('limits: connections caps open tunnels; a closed tunnel frees its slot', async (t) => {
  const { url, port, up } = await limitedGateway(t, { limits: { perClient: { connections: 1 } } })
  const ws = await openWs(t, url)
  const limited = await upgrade(port)
  assert.deepEqual([limited.status, limited.headers['retry-after'], limited.headers.connection], [429, '1', 'close'])
  assert.equal(up.seen.upgrades, 1)
  ws.close()
  await wsClosed(ws)
  assert.ok(await until(async () => (await upgrade(port)).status === 101))
})

test('limits: past upgradesPerMinute an upgrade gets 429 with an honest Retry-After, and nothing is dialled', async (t) => {
  const { port, up } = await limitedGateway(t, { limits: { perClient: { upgradesPerMinute: 2 } } })
  assert.equal((await upgrade(port)).status, 101)
  assert.equal((await upgrade(port)).status, 101)
  const limited = await upgrade(port)
  assert.equal(limited.status, 429)
  // Two per minute: one more every 30 s, less the time this test has taken.
  const retry = Number(limited.headers['retry-after'])
  assert.ok(retry >= 29 && retry <= 30, `Retry-After ${retry}`)
  assert.equal(up.seen.connections, 2)
  assert.equal(up.seen.upgrades, 2)
})

test('limits: with trustProxy the client is the X-Forwarded-For address, each limited on its own', async (t) => {
  const { url, up } = await limitedGateway(t, { trustProxy: ['127.0.0.1'], limits: { perClient: { requestsPerSecond: 1, burst: 0 } } })
  const from = (client: string) => get(url, '/x', { 'x-forwarded-for': client })
  assert.equal((await from('203.0.113.1')).status, 200)
  assert.equal((await from('203.0.113.1')).status, 429)
  assert.equal((await from('203.0.113.2')).status, 200)
  assert.equal((await from('198.51.100.9, 203.0.113.2')).status, 429, 'the right-most untrusted entry is the client')
  assert.equal(up.seen.requests, 2)
})

test('limits: without trustProxy a client cannot escape its limit by sending X-Forwarded-For', async (t) => {
  const { url } = await limitedGateway(t, { limits: { perClient: { requestsPerSecond: 1, burst: 0 } } })
  assert.equal((await get(url, '/x', { 'x-forwarded-for': '203.0.113.1' })).status, 200)
  assert.equal((await get(url, '/x', { 'x-forwarded-for': '203.0.113.2' })).status, 429)
})

test('limits: refusals come before authorize, which never runs for them', async (t) => {
  let authorized = 0
  const { url } = await limitedGateway(t, { authorize: () => { authorized++; return true }, limits: { perClient: { requestsPerSecond: 1, burst: 0 } } })
  assert.equal((await get(url)).status, 200)
  assert.equal((await get(url)).status, 429)
  assert.equal(authorized, 1)
})

test('limits: refusals are counted in sockgate_limited_total and gateway.status()', async (t) => {
  const { url, port, gateway } = await limitedGateway(t, { limits: { perClient: { requestsPerSecond: 1, burst: 0, upgradesPerMinute: 1 } } })
  await get(url)
  await get(url)
  await get(url)
  await upgrade(port)
  await upgrade(port)
  const text = gateway.metrics()
  assert.match(text, /^# TYPE sockgate_limited_total counter$/m)
  assert.match(text, /^sockgate_limited_total\{limit="requestsPerSecond"\} 2$/m)
  assert.match(text, /^sockgate_limited_total\{limit="upgradesPerMinute"\} 1$/m)
  assert.match(text, /^sockgate_limited_total\{limit="connections"\} 0$/m)
  assert.match(text, /^sockgate_limit_clients 1$/m)
  // Valid text format: every sample line belongs to the family declared above it.
  let family = ''
  for (const line of text.trimEnd().split('\n')) {
    const declared = /^# TYPE (\S+) (counter|gauge)$/.exec(line)
    if (declared !== null) family = declared[1]!
    else if (!line.startsWith('# HELP ')) assert.ok(line.startsWith(family), `${line} is not of ${family}`)
  }
  assert.deepEqual(gateway.status().perClient, { clients: 1, refused: { connections: 0, requestsPerSecond: 2, upgradesPerMinute: 1, maxClients: 0 } })
})

test('limits: without perClient there is no table, no status entry and no metric family', async (t) => {
  const { url, gateway } = await limitedGateway(t, {})
  for (let i = 0; i < 5; i++) assert.equal((await get(url)).status, 200)
  assert.equal(gateway.clientLimits, null)
  assert.equal(gateway.status().perClient, undefined)
  assert.doesNotMatch(gateway.metrics(), /sockgate_limit/)
})

test('limits: one log record per client per window, however many refusals', async (t) => {
  const records: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line !== '') records.push(JSON.parse(line) as Record<string, unknown>)
      cb()
    },
  })
  const { url } = await limitedGateway(t, { trustProxy: true, logger: pino({ level: 'debug' }, stream), limits: { perClient: { requestsPerSecond: 1, burst: 0 } } })
  for (const client of ['203.0.113.1', '203.0.113.2']) {
    for (let i = 0; i < 6; i++) await get(url, '/x', { 'x-forwarded-for': client })
  }
  const limited = records.filter((r) => r.code === 'SOCKGATE_ERR_RATE_LIMITED')
  assert.deepEqual(limited.map((r) => [r.clientAddress, r.status, r.level]), [['203.0.113.1', 429, 30], ['203.0.113.2', 429, 30]])
})

test('limits: a flood of spoofed client addresses leaves the table at maxClients', async (t) => {
  const { port, gateway } = await limitedGateway(t, { trustProxy: true, limits: { perClient: { requestsPerSecond: 1, burst: 0, maxClients: 20 } } })
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })
  t.after(() => agent.destroy())
  const statuses = await Promise.all(Array.from({ length: 200 }, (_, i) => new Promise<number>((resolve, reject) => {
    const headers = { 'x-forwarded-for': `10.0.${i >> 8}.${i & 255}` }
    http.get({ host: '127.0.0.1', port, path: '/x', agent, headers }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    }).on('error', reject)
  })))
  assert.deepEqual(new Set(statuses), new Set([200]))
  assert.equal(gateway.status().perClient?.clients, 20)
})
