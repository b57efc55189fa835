import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import type { GatewayOptions } from '../src/index.js'
import {
  gatewayServer, httpUpstream, parseAnswer, rawExchange, recordEvents, refusedUrl, upgradeRequest, watchForCrashes, wsEchoUpstream,
} from './helpers/servers.js'

watchForCrashes()

/** An HTTP + WebSocket upstream that counts every request and upgrade it sees. */
async function countingUpstream (t: TestContext): Promise<{ url: string, seen: () => number }> {
  const up = await wsEchoUpstream(t)
  let seen = 0
  up.server.removeAllListeners('request')
  up.server.on('request', (_req, res) => {
    seen++
    res.writeHead(200, { 'content-type': 'text/plain' }).end('from upstream')
  })
  up.server.prependListener('upgrade', () => { seen++ })
  return { url: up.url, seen: () => seen }
}

async function hooked (t: TestContext, options: Partial<GatewayOptions>) {
  const up = await countingUpstream(t)
  const g = await gatewayServer(t, { target: up.url, ...options })
  return { ...g, up, events: recordEvents(g.gateway) }
}

/** Send an upgrade and read the raw answer. */
async function upgradeAnswer (port: number, path = '/ws', extra: Record<string, string> = {}) {
  return parseAnswer((await rawExchange(port, upgradeRequest(path, extra))).text)
}

// authorize

test('authorize: false answers 403 before any upstream is contacted, for requests and upgrades', async (t) => {
  const { url, port, up } = await hooked(t, { authorize: () => false })
  const res = await fetch(`${url}/x`)
  assert.equal(res.status, 403)
  await res.text()
  assert.equal((await upgradeAnswer(port)).status, 403)
  assert.equal(up.seen(), 0)
})

test('authorize: an async true lets the request and the upgrade through', async (t) => {
  const { url, port } = await hooked(t, { authorize: async () => { await new Promise((resolve) => setTimeout(resolve, 5)); return true } })
  assert.equal(await (await fetch(`${url}/x`)).text(), 'from upstream')
  assert.equal((await upgradeAnswer(port)).status, 101)
})

test('authorize: a number is that status and an object is that answer, headers and body included', async (t) => {
  const { url, port } = await hooked(t, {
    authorize: (req) => req.url === '/teapot' ? 418 : { status: 401, headers: { 'WWW-Authenticate': 'Bearer' }, body: 'log in first' },
  })
  assert.equal((await fetch(`${url}/teapot`)).status, 418)
  const res = await fetch(`${url}/private`)
  assert.deepEqual([res.status, res.headers.get('www-authenticate'), await res.text()], [401, 'Bearer', 'log in first'])
  const raw = await upgradeAnswer(port)
  assert.deepEqual([raw.status, raw.headers['www-authenticate'], raw.headers.connection, raw.body], [401, 'Bearer', 'close', 'log in first'])
})

test('authorize: it sees the cookie a browser sends on a WebSocket upgrade', async (t) => {
  const seen: Array<string | undefined> = []
  const { port } = await hooked(t, { authorize: (req: IncomingMessage) => { seen.push(req.headers.cookie); return req.headers.cookie === 'session=ok' } })
  assert.equal((await upgradeAnswer(port, '/ws', { Cookie: 'session=ok' })).status, 101)
  assert.equal((await upgradeAnswer(port, '/ws', { Cookie: 'session=stolen' })).status, 403)
  assert.deepEqual(seen, ['session=ok', 'session=stolen'])
})

test('authorize: a throw or a rejection is a 500 and a SOCKGATE_ERR_HOOK, and no upstream is contacted', async (t) => {
  const { url, port, up, events } = await hooked(t, {
    authorize: (req) => {
      if (req.url === '/sync') throw new Error('token store down')
      return Promise.reject(new Error('token store down'))
    },
  })
  assert.equal((await fetch(`${url}/sync`)).status, 500)
  assert.equal((await fetch(`${url}/async`)).status, 500)
  assert.equal((await upgradeAnswer(port)).status, 500)
  assert.equal(up.seen(), 0)
  assert.deepEqual(events.errors.map((e) => [e.error.code, e.kind]), [
    ['SOCKGATE_ERR_HOOK', 'http'], ['SOCKGATE_ERR_HOOK', 'http'], ['SOCKGATE_ERR_HOOK', 'upgrade'],
  ])
  assert.match(events.errors[0]!.error.message, /authorize hook failed \(token store down\)/)
})

test('authorize: an answer that cannot be sent (a status out of range, CR LF in a header) is a 500, never a split header', async (t) => {
  const { url, port, events } = await hooked(t, {
    authorize: (req) => req.url === '/bad-status' ? 42 : { status: 401, headers: { 'X-Evil': 'a\r\nSet-Cookie: owned=1' } },
  })
  assert.equal((await fetch(`${url}/bad-status`)).status, 500)
  const res = await fetch(`${url}/split`)
  assert.deepEqual([res.status, res.headers.get('set-cookie')], [500, null])
  const raw = await upgradeAnswer(port, '/split')
  assert.deepEqual([raw.status, raw.headers['set-cookie']], [500, undefined])
  assert.ok(events.errors.every((e) => e.error.code === 'SOCKGATE_ERR_HOOK'))
})

test('authorize: it runs only for routed requests', async (t) => {
  const up = await countingUpstream(t)
  let calls = 0
  const { url } = await gatewayServer(t, {
    upstreams: { api: { servers: [up.url] } },
    routes: [{ path: '/api', upstream: 'api' }],
    authorize: () => { calls++; return true },
  })
  assert.equal((await fetch(`${url}/elsewhere`)).status, 404)
  assert.equal((await fetch(`${url}/api/x`)).status, 200)
  assert.equal(calls, 1)
})

// onError

test('onError: the hook may answer a failure with the app\'s own page, for requests and upgrades', async (t) => {
  const dead = await refusedUrl()
  const { url, port } = await gatewayServer(t, {
    target: dead,
    onError: (err, _req, target) => {
      if ('writeHead' in target) target.writeHead(err.statusCode, { 'content-type': 'text/html' }).end('<h1>We are on it</h1>')
      else target.end(`HTTP/1.1 ${err.statusCode} Bad Gateway\r\nConnection: close\r\nContent-Length: 9\r\n\r\nwe are on`)
    },
  })
  const res = await fetch(`${url}/x`)
  assert.deepEqual([res.status, res.headers.get('content-type'), await res.text()], [502, 'text/html', '<h1>We are on it</h1>'])
  const raw = await upgradeAnswer(port)
  assert.deepEqual([raw.status, raw.body], [502, 'we are on'])
})

test('onError: a hook that answers nothing leaves the usual 502, and an async one is waited for', async (t) => {
  const dead = await refusedUrl()
  const seen: string[] = []
  const { url, port } = await gatewayServer(t, {
    target: dead,
    onError: async (err) => { await new Promise((resolve) => setTimeout(resolve, 5)); seen.push(err.code) },
  })
  assert.equal((await fetch(`${url}/x`)).status, 502)
  assert.equal((await upgradeAnswer(port)).status, 502)
  assert.deepEqual(seen, ['SOCKGATE_ERR_UPSTREAM_CONNECT', 'SOCKGATE_ERR_UPSTREAM_CONNECT'])
})

test('onError: a hook that throws is reported as SOCKGATE_ERR_HOOK and the usual answer is sent', async (t) => {
  const dead = await refusedUrl()
  const { url, gateway } = await gatewayServer(t, { target: dead, onError: () => { throw new Error('template missing') } })
  const events = recordEvents(gateway)
  assert.equal((await fetch(`${url}/x`)).status, 502)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_CONNECT', 'SOCKGATE_ERR_HOOK'])
})

test('onError: refusals of the client\'s own mistakes (a bad upgrade) go through it too', async (t) => {
  const codes: string[] = []
  const { port } = await hooked(t, { onError: (err) => { codes.push(err.code) } })
  const raw = await upgradeAnswer(port, '/ws', { 'Sec-WebSocket-Version': '8' })
  assert.equal(raw.status, 426)
  assert.deepEqual(codes, ['SOCKGATE_ERR_UPGRADE_VERSION'])
})

// onResponse

test('onResponse: headers it sets reach the client with the upstream\'s answer', async (t) => {
  const up = await httpUpstream(t, (_req, res) => { res.writeHead(200, { 'x-upstream': '1' }).end('ok') })
  const { url } = await gatewayServer(t, {
    target: up.url,
    onResponse: (req, _res, headers) => {
      headers['access-control-allow-origin'] = req.headers.origin ?? '*'
      delete headers['x-upstream']
    },
  })
  const res = await fetch(`${url}/x`, { headers: { Origin: 'https://app.example.com' } })
  assert.deepEqual([res.status, res.headers.get('access-control-allow-origin'), res.headers.get('x-upstream'), await res.text()],
    [200, 'https://app.example.com', null, 'ok'])
})

test('onResponse: a throw is a 500 and SOCKGATE_ERR_HOOK, and the upstream is not marked down', async (t) => {
  const up = await httpUpstream(t, (_req, res) => { res.writeHead(200).end('ok') })
  const { url, gateway } = await gatewayServer(t, { target: up.url, onResponse: () => { throw new Error('bad header logic') } })
  const events = recordEvents(gateway)
  assert.equal((await fetch(`${url}/x`)).status, 500)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_HOOK'])
  assert.equal(gateway.status().pools.default!.servers[0]!.state, 'up')
})
