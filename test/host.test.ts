import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http, { type IncomingHttpHeaders } from 'node:http'
import { createGateway } from '../src/index.js'
import { isValidHost } from '../src/host.js'
import {
  gatewayServer, httpUpstream, listen, parseAnswer, rawExchange, recordEvents, upgradeRequest, watchForCrashes, wsEchoUpstream,
} from './helpers/servers.js'

watchForCrashes()

/** Host values the review found routed or forwarded as they were. */
const MALFORMED = ['app.example.com:1@evil.example', 'evil.example, x.example.com', 'a b', 'localhost:abc', '[::1', '[nope]:80', 'x.example.com:99999', 'app.example.com/', '']

/** An upstream that records what it was sent. */
async function recordingUpstream (t: TestContext) {
  const seen: IncomingHttpHeaders[] = []
  const upstream = await httpUpstream(t, (req, res) => {
    seen.push(req.headers)
    res.end('upstream')
  })
  return { ...upstream, seen }
}

test('host: a malformed Host is refused 400 before it picks a route or reaches an upstream', async (t) => {
  const upstream = await recordingUpstream(t)
  const { port, gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [upstream.url] } },
    routes: [{ host: 'app.example.com', path: '/', upstream: 'app' }],
  })
  const events = recordEvents(gateway)
  for (const host of MALFORMED) {
    const { text } = await rawExchange(port, `GET /chat HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
    const answer = parseAnswer(text)
    assert.equal(answer.status, 400, `Host ${JSON.stringify(host)}: ${text}`)
    assert.match(answer.body, /Host header must be a host name or IP address/)
  }
  assert.equal(upstream.seen.length, 0, 'a malformed Host reached the upstream')
  assert.equal(events.errors.length, MALFORMED.length)
  assert.ok(events.errors.every((e) => e.error.code === 'SOCKGATE_ERR_BAD_REQUEST'))
})

test('host: a good Host routes and is forwarded exactly as the client sent it, in Host and X-Forwarded-Host', async (t) => {
  const upstream = await recordingUpstream(t)
  const { port } = await gatewayServer(t, {
    upstreams: { app: { servers: [upstream.url] } },
    routes: [{ host: 'app.example.com', path: '/', upstream: 'app' }, { path: '/', upstream: 'app' }],
  })
  for (const host of ['App.Example.com:8080', 'app.example.com', '127.0.0.1:80', '[::1]:8080', '[::ffff:127.0.0.1]', 'under_score.local', 'app.example.com:']) {
    const { text } = await rawExchange(port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
    assert.equal(parseAnswer(text).status, 200, `Host ${host}: ${text}`)
    const seen = upstream.seen.at(-1)!
    assert.equal(seen.host, host)
    assert.equal(seen['x-forwarded-host'], host)
  }
})

test('host: HTTP/1.0 without Host still routes (as any host); HTTP/1.1 without one is refused by Node itself', async (t) => {
  const upstream = await recordingUpstream(t)
  const { port } = await gatewayServer(t, { target: upstream.url })
  assert.equal(parseAnswer((await rawExchange(port, 'GET / HTTP/1.0\r\n\r\n')).text).status, 200)
  assert.equal(parseAnswer((await rawExchange(port, 'GET / HTTP/1.1\r\nConnection: close\r\n\r\n')).text).status, 400)
})

test('host: with a server that does not require Host, the gateway still answers an HTTP/1.1 request without one 400', async (t) => {
  const upstream = await recordingUpstream(t)
  const gateway = createGateway({ target: upstream.url })
  t.after(() => gateway.close())
  const server = http.createServer({ requireHostHeader: false }, (req, res) => gateway.handleRequest(req, res))
  const port = await listen(t, server)
  const answer = parseAnswer((await rawExchange(port, 'GET / HTTP/1.1\r\nConnection: close\r\n\r\n')).text)
  assert.equal(answer.status, 400)
  assert.match(answer.body, /HTTP\/1\.1 requires a Host header/)
  assert.equal(upstream.seen.length, 0)
})

test('host: a malformed Host on a path no route takes is left to the app (next), not refused by the gateway', async (t) => {
  const upstream = await recordingUpstream(t)
  const gateway = createGateway({ upstreams: { api: { servers: [upstream.url] } }, routes: [{ path: '/api', upstream: 'api' }], status: true })
  t.after(() => gateway.close())
  const server = http.createServer((req, res) => gateway.handleRequest(req, res, () => res.end('the app')))
  const port = await listen(t, server)
  const own = parseAnswer((await rawExchange(port, 'GET /home HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n')).text)
  assert.equal(own.status, 200)
  assert.equal(own.body, 'the app')
  const routed = parseAnswer((await rawExchange(port, 'GET /api/x HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n')).text)
  assert.equal(routed.status, 400)
  const status = parseAnswer((await rawExchange(port, 'GET /sockgate/status?format=json HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n')).text)
  assert.equal(status.status, 400, 'the status page answered a malformed Host')
  assert.equal(upstream.seen.length, 0)
})

test('host: an upgrade with a malformed Host, or an HTTP/1.1 upgrade without Host, is refused 400 and never tunnelled', async (t) => {
  const upstream = await wsEchoUpstream(t)
  let dialled = 0
  upstream.server.on('connection', () => { dialled++ })
  const { port, gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [upstream.url] } },
    routes: [{ host: 'app.example.com', path: '/', upstream: 'app' }, { path: '/ws', upstream: 'app' }],
  })
  const events = recordEvents(gateway)
  for (const host of ['app.example.com:1@evil.example', 'localhost:abc', '']) {
    const { text, closed } = await rawExchange(port, upgradeRequest('/ws', {}, host))
    assert.equal(parseAnswer(text).status, 400, `Host ${JSON.stringify(host)}: ${text}`)
    assert.equal(closed, true)
  }
  assert.match(events.errors.at(-1)!.error.message, /HTTP\/1\.1 requires a Host header/)
  assert.equal(dialled, 0, 'an upstream was dialled')
  assert.equal(events.opened.length, 0)
  // A good Host still opens the tunnel, so the refusals above are about the Host alone.
  const { text } = await rawExchange(port, upgradeRequest('/ws', {}, 'app.example.com'), 500)
  assert.equal(parseAnswer(text).status, 101)
})

test('host: isValidHost takes reg-names and IP literals with an optional port, and nothing else', () => {
  for (const good of ['a', 'a.b-c_d~e', '127.0.0.1', '[::1]', '[2001:db8::1]:443', 'x:0', 'x:65535', 'x:']) assert.equal(isValidHost(good), true, good)
  for (const bad of [...MALFORMED, 'x:65536', '[::1]x', 'a%20b', 'a;b', '[v1.x]', 'x::80', ' x']) assert.equal(isValidHost(bad), false, bad)
})
