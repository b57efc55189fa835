import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import http, { type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { runInThisContext } from 'node:vm'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { createGateway, type GatewayOptions } from '../src/index.js'
import { eventually, gatewayServer, httpUpstream, listen, nextMessage, openWs, refusedUrl, watchForCrashes, wsClosed } from './helpers/servers.js'
import { startNode } from './helpers/cluster.js'

watchForCrashes()

const CHROMIUM = '/usr/bin/chromium'

/** GET `path` with optional headers: status, headers and body. */
async function get (url: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number, type: string, body: string, headers: Headers }> {
  const res = await fetch(url + path, { headers })
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text(), headers: res.headers }
}

/** Two pools: one with a live node and a refused server (checked by tcp), one with a single node. */
async function statusGateway (t: TestContext, extra: Partial<GatewayOptions> = {}) {
  const a = await startNode(t, 'a')
  const b = await startNode(t, 'b')
  const dead = await refusedUrl()
  const g = await gatewayServer(t, {
    upstreams: {
      socket_nodes: { servers: [a.url, dead], health: { interval: 100, timeout: 100, fall: 1 } },
      api: { servers: [b.url] },
    },
    routes: [{ path: '/api', upstream: 'api', stripPrefix: true }, { path: '/', upstream: 'socket_nodes' }],
    status: true,
    ...extra,
  })
  return { ...g, a, b, dead }
}

interface Sample { name: string, labels: Record<string, string>, value: number }

/**
 * A small parser of the Prometheus text exposition format (0.0.4): HELP and
 * TYPE comments, samples with escaped label values. Throws on anything else.
 */
function parsePrometheus (text: string): { types: Map<string, string>, samples: Sample[] } {
  const types = new Map<string, string>()
  const helps = new Set<string>()
  const samples: Sample[] = []
  assert.ok(text.endsWith('\n'), 'the exposition must end with a line feed')
  for (const line of text.slice(0, -1).split('\n')) {
    let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line)
    if (m !== null) {
      if (m[1] === 'HELP') helps.add(m[2]!)
      else {
        assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3]!), `bad TYPE: ${line}`)
        assert.ok(!types.has(m[2]!), `TYPE given twice for ${m[2]}`)
        types.set(m[2]!, m[3]!)
      }
      continue
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/.exec(line)
    assert.ok(m !== null, `not a sample line: ${JSON.stringify(line)}`)
    const labels: Record<string, string> = {}
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y
    const body = m[2] ?? ''
    while (re.lastIndex < body.length) {
      const l = re.exec(body)
      assert.ok(l !== null, `bad labels: ${body}`)
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_s, c: string) => c === 'n' ? '\n' : c)
    }
    const name = m[1]!
    assert.ok(types.has(name), `sample before its TYPE line: ${name}`)
    assert.ok(helps.has(name), `no HELP line for ${name}`)
    samples.push({ name, labels, value: Number(m[3]) })
  }
  return { types, samples }
}

/** The value of the sample named `name` whose labels include `labels` (0 when absent). */
function valueOf (samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const s = samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
  return s?.value ?? 0
}

test('status: the page is off unless status is configured', async (t) => {
  const up = await httpUpstream(t, (_req, res) => { res.writeHead(200).end('from upstream') })
  const { url } = await gatewayServer(t, { target: up.url })
  const res = await get(url, '/sockgate/status')
  assert.deepEqual({ status: res.status, body: res.body }, { status: 200, body: 'from upstream' })
})

test('status: the HTML page lists every pool, server and state, and reloads itself', async (t) => {
  const { url, gateway, a, dead } = await statusGateway(t)
  assert.ok(await eventually(() => gateway.status().pools.socket_nodes!.servers[1]!.state === 'down'))
  await gateway.pool('api').drain(gateway.status().pools.api!.servers[0]!.url)
  const res = await get(url, '/sockgate/status')
  assert.equal(res.status, 200)
  assert.match(res.type, /^text\/html/)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  assert.match(res.body, /<meta http-equiv="refresh" content="\d+">/)
  for (const name of ['socket_nodes', 'api']) assert.ok(res.body.includes(`<code>${name}</code>`), `pool ${name} missing`)
  for (const server of gateway.status().pools.socket_nodes!.servers.concat(gateway.status().pools.api!.servers)) {
    const row = res.body.split('<tr>').find((r) => r.includes(`<code>${server.url}</code>`))
    assert.ok(row !== undefined, `no row for ${server.url}`)
    assert.ok(row.includes(`state-${server.state}">${server.state}<`), `${server.url} should show ${server.state}`)
  }
  assert.ok(res.body.includes('ECONNREFUSED'), 'the down server does not say why')
  assert.ok(res.body.includes(dead) && res.body.includes(a.url))
  assert.match(res.body, /state-draining">draining</)
})

test('status: the HTML page escapes pool names', async (t) => {
  const up = await httpUpstream(t, (_req, res) => { res.writeHead(200).end() })
  const { url } = await gatewayServer(t, { upstreams: { '<img src=x onerror="alert(1)">': { servers: [up.url] } }, status: true })
  const res = await get(url, '/sockgate/status')
  assert.ok(!res.body.includes('<img'), 'a pool name was written as markup')
  assert.ok(res.body.includes('&#60;img src=x onerror=&#34;alert(1)&#34;&#62;'))
  assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/)
})

test('status: the HTML page renders in Chromium without console errors', async (t) => {
  if (!existsSync(CHROMIUM)) {
    if (process.env.CI === 'true') assert.fail(`${CHROMIUM} is missing; CI must install Chromium (apt-get install chromium)`)
    t.skip(`${CHROMIUM} is missing: run apt-get install chromium to render the status page`)
    return
  }
  const { url, gateway } = await statusGateway(t)
  assert.ok(await eventually(() => gateway.status().pools.socket_nodes!.servers.every((s) => s.lastCheck !== null)))
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  })
  t.after(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } })
  const problems: string[] = []
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`) })
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`))
  page.on('requestfailed', (r) => problems.push(`requestfailed: ${r.url()}`))
  const response = await page.goto(url + '/sockgate/status', { waitUntil: 'load' })
  assert.equal(response?.status(), 200)
  assert.equal(await page.title(), 'sockgate status')
  assert.equal(await page.locator('table').count(), 2, 'one table per pool')
  assert.equal(await page.locator('tbody tr').count(), 3, 'one row per server')
  const shot = join(tmpdir(), `sockgate-status-${process.pid}.png`)
  await page.screenshot({ path: shot, fullPage: true })
  t.diagnostic(`status page screenshot: ${shot}`)
  assert.deepEqual(problems, [])
})

test('status: JSON (by Accept or ?format=json) equals gateway.status()', async (t) => {
  // No health checks here: the snapshot must not change between the two reads.
  const node = await startNode(t, 'a')
  const { url, gateway } = await gatewayServer(t, { target: [await refusedUrl(), node.url], status: true })
  assert.equal((await get(url, '/')).body, 'node a')
  for (const [path, headers] of [['/sockgate/status', { accept: 'application/json' }], ['/sockgate/status?format=json', {}]] as const) {
    const res = await get(url, path, headers)
    assert.equal(res.status, 200)
    assert.match(res.type, /^application\/json/)
    assert.deepEqual(JSON.parse(res.body), gateway.status())
  }
})

test('status: Prometheus text parses, has the sockgate_* families, and its counters move with traffic', async (t) => {
  const { url, gateway, b } = await statusGateway(t)
  const scrape = async () => {
    const res = await get(url, '/sockgate/status?format=prometheus')
    assert.equal(res.status, 200)
    assert.equal(res.type, 'text/plain; version=0.0.4; charset=utf-8')
    return parsePrometheus(res.body)
  }
  const before = await scrape()
  for (const [name, type] of [['sockgate_upstream_up', 'gauge'], ['sockgate_tunnels_open', 'gauge'], ['sockgate_requests_total', 'counter'],
    ['sockgate_upgrades_total', 'counter'], ['sockgate_upstream_failures_total', 'counter'], ['sockgate_bytes_total', 'counter']]) {
    assert.equal(before.types.get(name!), type, `${name} should be a ${type}`)
  }
  const api = { pool: 'api', server: b.url }
  assert.equal(valueOf(before.samples, 'sockgate_upstream_up', api), 1)
  assert.equal(valueOf(before.samples, 'sockgate_requests_total', { ...api, status: '200' }), 0)

  assert.equal((await get(url, '/api')).status, 200)
  const ws = await openWs(t, url + '/api/ws')
  const echoed = nextMessage(ws)
  ws.send('ping')
  await echoed
  const during = await scrape()
  assert.equal(valueOf(during.samples, 'sockgate_tunnels_open'), 1)
  ws.close()
  await wsClosed(ws)
  assert.ok(await eventually(() => gateway.status().tunnels.open === 0))
  await b.kill()
  assert.equal((await get(url, '/api')).status, 502)

  const after = await scrape()
  assert.equal(valueOf(after.samples, 'sockgate_requests_total', { ...api, status: '200' }), 1)
  assert.equal(valueOf(after.samples, 'sockgate_requests_total', { ...api, status: '502' }), 1)
  assert.equal(valueOf(after.samples, 'sockgate_upgrades_total', { ...api, result: 'switched' }), 1)
  assert.equal(valueOf(after.samples, 'sockgate_upstream_failures_total', { ...api, reason: 'ECONNREFUSED' }), 1)
  assert.ok(valueOf(after.samples, 'sockgate_bytes_total', { ...api, direction: 'in' }) > 0)
  assert.ok(valueOf(after.samples, 'sockgate_bytes_total', { ...api, direction: 'out' }) > 0)
  assert.equal(valueOf(after.samples, 'sockgate_upstream_up', api), 0, 'passive failure shows as down')
  assert.equal(valueOf(after.samples, 'sockgate_tunnels_open'), 0)
})

test('status: gateway.metrics() is the Prometheus text, with label values escaped', async (t) => {
  const up = await httpUpstream(t, (_req, res) => { res.writeHead(200).end() })
  const pool = 'we"ird\\pool\nname'
  const { url, gateway } = await gatewayServer(t, { upstreams: { [pool]: { servers: [up.url] } }, status: true })
  const text = gateway.metrics()
  assert.ok(text.includes('pool="we\\"ird\\\\pool\\nname"'), 'label value not escaped')
  const parsed = parsePrometheus(text)
  assert.equal(valueOf(parsed.samples, 'sockgate_upstream_up', { pool, server: up.url }), 1)
  assert.equal((await get(url, '/sockgate/status?format=prometheus')).body, text)
})

test('status: a named server shows its name on the page, in JSON and as its metrics label', async (t) => {
  const up = await httpUpstream(t, (_req, res) => { res.writeHead(200).end() })
  const { url, gateway } = await gatewayServer(t, { target: [{ url: up.url, name: 'node-1' }], status: true })
  const page = await get(url, '/sockgate/status')
  assert.ok(page.body.includes(`<strong>node-1</strong> <code>${up.url}</code>`), 'the row does not show the name')
  assert.equal(gateway.status().pools.default!.servers[0]!.name, 'node-1')
  const { samples } = parsePrometheus(gateway.metrics())
  assert.equal(valueOf(samples, 'sockgate_upstream_up', { pool: 'default', server: 'node-1' }), 1)
  assert.ok(!samples.some((x) => x.labels.server === up.url), 'a named server is still labelled by its URL')
})

test('status: the auth hook decides who sees the page; no (or a throw) is 403', async (t) => {
  const up = await httpUpstream(t, (_req, res) => { res.writeHead(200).end() })
  const { url } = await gatewayServer(t, {
    target: up.url,
    status: {
      path: '/_status',
      auth: async (req) => {
        if (req.headers['x-boom'] !== undefined) throw new Error('auth backend down')
        return req.headers.authorization === 'Bearer letmein'
      },
    },
  })
  const denied = await get(url, '/_status?format=json')
  assert.equal(denied.status, 403)
  assert.doesNotMatch(denied.body, /pools/)
  assert.equal((await get(url, '/_status', { authorization: 'Bearer nope', 'x-boom': '1' })).status, 403)
  const allowed = await get(url, '/_status?format=json', { authorization: 'Bearer letmein' })
  assert.equal(allowed.status, 200)
  assert.ok('pools' in JSON.parse(allowed.body))
})

test('status: it answers on every host unless status.host is set', async (t) => {
  const up = await httpUpstream(t, (_req, res) => { res.writeHead(200).end('upstream') })
  const open = await gatewayServer(t, { upstreams: { app: { servers: [up.url] } }, routes: [{ host: 'app.example', upstream: 'app' }], status: true })
  assert.equal((await get(open.url, '/sockgate/status?format=json', { host: 'anything.example' })).status, 200)

  const pinned = await gatewayServer(t, { target: up.url, status: { host: 'ops.example' } })
  assert.equal((await get(pinned.url, '/sockgate/status?format=json', { host: 'ops.example:8080' })).status, 200)
  const other = await get(pinned.url, '/sockgate/status?format=json', { host: 'app.example' })
  assert.deepEqual({ status: other.status, body: other.body }, { status: 200, body: 'upstream' })
})

test('status: an unknown format is 400 and a POST is 405', async (t) => {
  const up = await httpUpstream(t, (_req, res) => { res.writeHead(200).end() })
  const { url } = await gatewayServer(t, { target: up.url, status: true })
  assert.equal((await get(url, '/sockgate/status?format=xml')).status, 400)
  const res = await fetch(url + '/sockgate/status', { method: 'POST', body: 'x' })
  assert.equal(res.status, 405)
  assert.equal(res.headers.get('allow'), 'GET, HEAD')
})

test('status: the auth examples of docs/options.md and docs/health.md let loopback in on a dual-stack server (::ffff:127.0.0.1)', async (t) => {
  for (const doc of ['docs/options.md', 'docs/health.md']) {
    // The example as the page prints it: plain JavaScript, so it runs as it is.
    const source = /auth: (\(req\) => [^\n]+?\)),?\s*\}/.exec(readFileSync(doc, 'utf8'))?.[1]
    assert.ok(source !== undefined, `${doc} has no one-line auth example`)
    const auth = runInThisContext(source) as (req: IncomingMessage) => boolean
    const gateway = createGateway({ target: await refusedUrl(), status: { path: '/status', auth } })
    t.after(() => gateway.close())
    const server = http.createServer((req, res) => gateway.handleRequest(req, res))
    // No host: Node listens on `::` where it can, and an IPv4 client shows up as ::ffff:127.0.0.1.
    await new Promise<void>((resolve) => server.listen(0, resolve))
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())))
    const { port } = server.address() as AddressInfo
    const seen: string[] = []
    server.on('request', (req) => seen.push(req.socket.remoteAddress ?? ''))
    assert.equal((await get(`http://127.0.0.1:${port}`, '/status')).status, 200, `${doc}: ${source}`)
    assert.ok(seen[0] === '::ffff:127.0.0.1' || seen[0] === '127.0.0.1', seen[0])
    // And on a server bound to 127.0.0.1 itself, where the peer is plain 127.0.0.1.
    const v4 = http.createServer((req, res) => gateway.handleRequest(req, res))
    const v4port = await listen(t, v4)
    assert.equal((await get(`http://127.0.0.1:${v4port}`, '/status')).status, 200, `${doc}: ${source}`)
  }
})
