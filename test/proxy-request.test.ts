import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import http from 'node:http'
import type { TestContext } from 'node:test'
import supertest from 'supertest'
import { io as ioClient } from 'socket.io-client'
import { createGateway } from '../src/index.js'
import {
  eventually, gatewayServer, httpUpstream, listen, parseAnswer, rawExchange, rawUpstream, recordEvents, refusedUrl,
  socketIoUpstream, upgradeRequest, watchForCrashes,
} from './helpers/servers.js'

// Every failure below must reach the client as a status or a cut connection, never as an uncaught exception.
watchForCrashes()

/** What an upstream saw of one request. */
interface Seen {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  rawHeaders: string[]
  body: Buffer
}

/**
 * An upstream that records every request (with its whole body) and every TCP
 * connection, then answers `200 ok`, or whatever `answer` writes.
 */
async function recordingUpstream (t: TestContext, answer?: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const seen: Seen[] = []
  let connections = 0
  const { server, url } = await httpUpstream(t, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) })
      if (answer === undefined) res.end('ok')
      else answer(req, res)
    })
  })
  server.on('connection', () => { connections++ })
  return { url, seen, connections: () => connections }
}

/** The one request an upstream saw; fails the test when it saw another number. */
function only (seen: readonly Seen[]): Seen {
  assert.equal(seen.length, 1, `the upstream saw ${seen.length} requests`)
  return seen[0]!
}

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** One request on its own connection (no agent), so the raw headers are exactly the ones given. */
function send (port: number, options: http.RequestOptions, body?: string | Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, agent: false, ...options }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

// What reaches the upstream

test('forward: a GET reaches the upstream with its method, path and query intact', async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await gatewayServer(t, { target: up.url })

  const res = await supertest(url).get('/rooms/42/messages?since=17&limit=5&q=a%20b')

  assert.equal(res.status, 200)
  assert.equal(res.text, 'ok')
  const seen = only(up.seen)
  assert.equal(seen.method, 'GET')
  assert.equal(seen.url, '/rooms/42/messages?since=17&limit=5&q=a%20b')
})

test('forward: a POST reaches the upstream with its body intact', async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await gatewayServer(t, { target: up.url })
  const payload = JSON.stringify({ room: 'lobby', text: 'héllo wörld', n: [1, 2, 3] })

  const res = await supertest(url).post('/messages?draft=0').set('Content-Type', 'application/json').send(payload)

  assert.equal(res.status, 200)
  const seen = only(up.seen)
  assert.equal(seen.method, 'POST')
  assert.equal(seen.url, '/messages?draft=0')
  assert.equal(seen.headers['content-type'], 'application/json')
  assert.equal(seen.body.toString('utf8'), payload)
})

test('forward: the upstream status, headers and body reach the client', async (t) => {
  const up = await recordingUpstream(t, (_req, res) => {
    res.writeHead(418, { 'content-type': 'text/x-teapot', 'x-brew': 'oolong' })
    res.end('short and stout')
  })
  const { url } = await gatewayServer(t, { target: up.url })

  const res = await supertest(url).get('/')

  assert.equal(res.status, 418)
  assert.equal(res.headers['content-type'], 'text/x-teapot')
  assert.equal(res.headers['x-brew'], 'oolong')
  assert.equal(res.text, 'short and stout')
})

test('forward: sequential requests reuse keep-alive connections to the upstream', async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await gatewayServer(t, { target: up.url })

  for (let i = 0; i < 20; i++) {
    const res = await supertest(url).get(`/n/${i}`)
    assert.equal(res.status, 200)
  }

  assert.equal(up.seen.length, 20)
  assert.ok(up.connections() < 20, `the upstream saw ${up.connections()} connections for 20 requests`)
})

test('forward: a 5 MiB response body arrives intact', async (t) => {
  const blob = randomBytes(5 * 1024 * 1024)
  const up = await recordingUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    res.end(blob)
  })
  const { port } = await gatewayServer(t, { target: up.url })

  const res = await send(port, { path: '/blob' })

  assert.equal(res.status, 200)
  assert.equal(res.body.length, blob.length)
  assert.equal(sha256(res.body), sha256(blob))
})

test('forward: a chunked request body is streamed to the upstream before it ends', async (t) => {
  const limit = 300_000
  let upstreamBytes = 0
  const received: Buffer[] = []
  const { url: upstreamUrl } = await httpUpstream(t, (req, res) => {
    req.on('data', (chunk: Buffer) => { upstreamBytes += chunk.length; received.push(chunk) })
    req.on('end', () => res.end(String(upstreamBytes)))
  })
  const { port } = await gatewayServer(t, { target: upstreamUrl, limits: { body: limit } })
  const body = randomBytes(limit)

  const answer = new Promise<Answer>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
    })
    req.on('error', reject)
    req.write(body.subarray(0, 1000))
    // The rest is only sent once the upstream has the first bytes: a gateway that buffered the whole body would stall here.
    eventually(() => upstreamBytes > 0).then((arrived) => {
      if (!arrived) return req.destroy(new Error('the first chunk never reached the upstream'))
      for (let at = 1000; at < body.length; at += 50_000) req.write(body.subarray(at, Math.min(at + 50_000, body.length)))
      req.end()
    }, reject)
  })
  const res = await answer

  assert.equal(res.status, 200)
  assert.equal(res.body.toString(), String(limit))
  assert.equal(sha256(Buffer.concat(received)), sha256(body))
})

test('forward: a server given as a ws: URL takes plain HTTP requests', async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await gatewayServer(t, { target: up.url.replace('http:', 'ws:') })

  const res = await supertest(url).get('/socket.io/?EIO=4&transport=polling')

  assert.equal(res.status, 200)
  assert.equal(only(up.seen).url, '/socket.io/?EIO=4&transport=polling')
})

// Body limits

test('forward: a Content-Length past limits.body is answered 413 without contacting the upstream', async (t) => {
  const up = await recordingUpstream(t)
  const { url, gateway } = await gatewayServer(t, { target: up.url, limits: { body: 1000 } })
  const events = recordEvents(gateway)

  const res = await supertest(url).post('/upload').set('Content-Type', 'text/plain').send('x'.repeat(2000))

  assert.equal(res.status, 413)
  assert.equal(res.headers.connection, 'close')
  assert.equal(up.seen.length, 0)
  assert.equal(up.connections(), 0)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_BODY_TOO_LARGE'])
})

test('forward: a chunked body running past limits.body is answered 413 and the upstream request is aborted', async (t) => {
  const limit = 100_000
  let upstreamBytes = 0
  let upstreamClosed = false
  let upstreamComplete: boolean | undefined
  const { url: upstreamUrl } = await httpUpstream(t, (req, res) => {
    req.on('data', (chunk: Buffer) => { upstreamBytes += chunk.length })
    req.on('close', () => { upstreamClosed = true; upstreamComplete = req.complete })
    req.on('end', () => res.end('the whole body arrived'))
  })
  const { port, gateway } = await gatewayServer(t, { target: upstreamUrl, limits: { body: limit } })
  const events = recordEvents(gateway)

  const status = await new Promise<number>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', agent: false }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', reject)
    req.write(Buffer.alloc(16_384, 1))
    eventually(() => upstreamBytes > 0).then((arrived) => {
      if (!arrived) return req.destroy(new Error('the first chunk never reached the upstream'))
      // Past the limit, but the request is never ended: only the limit can produce an answer.
      for (let i = 0; i < 8; i++) req.write(Buffer.alloc(16_384, 2))
    }, reject)
  })

  assert.equal(status, 413)
  assert.ok(await eventually(() => upstreamClosed), 'the upstream request was not closed')
  assert.equal(upstreamComplete, false)
  assert.ok(upstreamBytes <= limit, `the upstream received ${upstreamBytes} bytes`)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_BODY_TOO_LARGE'])
})

test('forward: a chunked body running past limits.body after the answer began cuts the client connection', async (t) => {
  const limit = 100_000
  let upstreamClosed = false
  const { url: upstreamUrl } = await httpUpstream(t, (req, res) => {
    // Answers at once, then keeps reading: the limit is hit with the answer under way.
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('accepted\n')
    req.resume()
    req.on('close', () => { upstreamClosed = true })
    req.on('end', () => res.end('the whole body arrived\n'))
  })
  const { port, gateway } = await gatewayServer(t, { target: upstreamUrl, limits: { body: limit } })
  const events = recordEvents(gateway)

  const outcome = await new Promise<{ status: number, complete: boolean }>((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', agent: false }, (res) => {
      res.once('data', () => {
        for (let i = 0; i < 8; i++) req.write(Buffer.alloc(16_384, 2))
      })
      res.on('error', () => {})
      res.on('close', () => resolve({ status: res.statusCode ?? 0, complete: res.complete }))
    })
    req.on('error', () => {})
    req.write(Buffer.alloc(1000, 1))
  })

  assert.equal(outcome.status, 200)
  assert.equal(outcome.complete, false, 'the client received a complete answer')
  assert.ok(await eventually(() => upstreamClosed), 'the upstream request was not closed')
  assert.ok(await eventually(() => events.errors.length > 0))
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_BODY_TOO_LARGE'])
})

// Client and upstream failures

test('forward: a client that goes away mid-response cancels the upstream request', async (t) => {
  let upstreamClosed = false
  let finishedBeforeClose: boolean | undefined
  const { url: upstreamUrl } = await httpUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('first part\n')
    // Never ends on its own: only a cancelled request closes it.
    res.on('close', () => { upstreamClosed = true; finishedBeforeClose = res.writableFinished })
  })
  const { port, gateway } = await gatewayServer(t, { target: upstreamUrl })
  const events = recordEvents(gateway)

  const req = http.get({ host: '127.0.0.1', port, path: '/stream', agent: false }, (res) => {
    res.once('data', () => req.destroy())
  })
  req.on('error', () => {})

  assert.ok(await eventually(() => upstreamClosed), 'the upstream response was never closed')
  assert.equal(finishedBeforeClose, false)
  assert.ok(await eventually(() => events.errors.length > 0))
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_CLIENT_ABORTED'])
})

test('forward: an upstream that dies mid-response cuts the client connection and is reported', async (t) => {
  const upstream = await httpUpstream(t, (req, res) => {
    res.writeHead(200, { 'content-length': '100000' })
    res.write('x'.repeat(1000), () => req.socket.destroy())
  })
  const { port, gateway } = await gatewayServer(t, { target: upstream.url })
  const events = recordEvents(gateway)
  let received = 0
  const outcome = await new Promise<string>((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/dies', agent: false }, (res) => {
      res.on('data', (c: Buffer) => { received += c.length })
      res.on('end', () => resolve('ended'))
      res.on('error', () => resolve('cut'))
      res.on('aborted', () => resolve('cut'))
    })
    req.on('error', () => resolve('cut'))
  })
  assert.equal(outcome, 'cut', 'a truncated body must not look like a complete answer')
  assert.ok(received < 100_000)
  assert.ok(await eventually(() => events.errors.length > 0))
  assert.equal(events.errors[0]!.error.code, 'SOCKGATE_ERR_UPSTREAM_CONNECT')
  assert.ok(await eventually(() => gateway.status().pools.default!.servers[0]!.activeRequests === 0))
})

test('forward: an upstream answering a plain request with 101 is answered 502', async (t) => {
  const up = await rawUpstream(t, (socket) => {
    socket.once('data', () => socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'))
  })
  const { url, gateway } = await gatewayServer(t, { target: up.url })
  const events = recordEvents(gateway)

  const res = await supertest(url).get('/not-an-upgrade')

  assert.equal(res.status, 502)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_PROTOCOL'])
})

test('forward: an upstream that does not speak HTTP is answered 502', async (t) => {
  const up = await rawUpstream(t, (socket) => {
    socket.once('data', () => socket.write('SSH-2.0-OpenSSH_9.6\r\n'))
  })
  const { url, gateway } = await gatewayServer(t, { target: up.url })
  const events = recordEvents(gateway)

  const res = await supertest(url).get('/')

  assert.equal(res.status, 502)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_PROTOCOL'])
})

test('forward: a refused upstream connection is answered 502 without the upstream address', async (t) => {
  const target = await refusedUrl()
  const { url, gateway } = await gatewayServer(t, { target })
  const events = recordEvents(gateway)
  const { host, port } = new URL(target)

  const res = await supertest(url).get('/')

  assert.equal(res.status, 502)
  assert.ok(!res.text.includes(host), `the body names the upstream host: ${res.text}`)
  assert.ok(!res.text.includes(port), `the body names the upstream port: ${res.text}`)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_CONNECT'])
  // The operator does get the address, in the event.
  assert.equal(events.errors[0]?.server, new URL(target).origin)
})

test('forward: an upstream slower than timeouts.request is answered 504', async (t) => {
  const { url: upstreamUrl } = await httpUpstream(t, () => {
    // Never answers.
  })
  const { url, gateway } = await gatewayServer(t, { target: upstreamUrl, timeouts: { request: 300 } })
  const events = recordEvents(gateway)

  const res = await supertest(url).get('/slow')

  assert.equal(res.status, 504)
  assert.ok(!res.text.includes('127.0.0.1'), `the body names the upstream: ${res.text}`)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_TIMEOUT'])
})

// Headers

test('forward: hop-by-hop request headers and the names listed in Connection do not reach the upstream', async (t) => {
  const up = await recordingUpstream(t)
  const { port } = await gatewayServer(t, { target: up.url })

  const res = await send(port, {
    path: '/',
    headers: {
      Connection: 'keep-alive, X-Session-Secret',
      'Keep-Alive': 'timeout=30',
      TE: 'trailers',
      'Proxy-Connection': 'keep-alive',
      'X-Session-Secret': 'hunter2',
      'X-Kept': 'yes',
    },
  })

  assert.equal(res.status, 200)
  const seen = only(up.seen)
  for (const name of ['keep-alive', 'te', 'proxy-connection', 'x-session-secret']) {
    assert.equal(seen.headers[name], undefined, `${name} reached the upstream`)
  }
  assert.equal(seen.headers['x-kept'], 'yes')
})

test('forward: hop-by-hop response headers and the names listed in Connection do not reach the client', async (t) => {
  const up = await recordingUpstream(t, (_req, res) => {
    res.setHeader('Connection', 'X-Upstream-Internal')
    res.setHeader('Keep-Alive', 'timeout=99, max=7')
    res.setHeader('Proxy-Connection', 'keep-alive')
    res.setHeader('X-Upstream-Internal', 'node-3')
    res.setHeader('X-Kept', 'yes')
    res.end('ok')
  })
  const { port } = await gatewayServer(t, { target: up.url })

  const res = await send(port, { path: '/' })

  assert.equal(res.status, 200)
  assert.equal(res.headers['x-upstream-internal'], undefined)
  assert.equal(res.headers['proxy-connection'], undefined)
  // Node adds its own Connection and Keep-Alive for the client hop; the upstream's values must not show through.
  assert.doesNotMatch(String(res.headers.connection), /x-upstream-internal/i)
  assert.doesNotMatch(String(res.headers['keep-alive']), /timeout=99|max=7/)
  assert.equal(res.headers['x-kept'], 'yes')
})

test('forward: the Host header reaches the upstream byte for byte', async (t) => {
  const up = await recordingUpstream(t)
  const { port } = await gatewayServer(t, { target: up.url })

  await send(port, { path: '/', headers: { Host: 'App.Example.COM:8443' } })

  const raw = only(up.seen).rawHeaders
  const hosts = raw.filter((_, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === 'host')
  assert.deepEqual(hosts, ['App.Example.COM:8443'])
})

test('forward: the upstream sees X-Forwarded-For, -Proto, -Host and -Port of this hop', async (t) => {
  const up = await recordingUpstream(t)
  const { port } = await gatewayServer(t, { target: up.url })

  await send(port, { path: '/', headers: { Host: 'chat.example.com' } })

  const seen = only(up.seen)
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
  assert.equal(seen.headers['x-forwarded-proto'], 'http')
  assert.equal(seen.headers['x-forwarded-host'], 'chat.example.com')
  assert.equal(seen.headers['x-forwarded-port'], String(port))
})

test('forward: X-Forwarded-* sent by an untrusted client are replaced', async (t) => {
  const up = await recordingUpstream(t)
  const { port } = await gatewayServer(t, { target: up.url })

  await send(port, {
    path: '/',
    headers: {
      Host: 'chat.example.com',
      'X-Forwarded-For': '6.6.6.6',
      'X-Forwarded-Proto': 'https',
      'X-Forwarded-Host': 'admin.example.com',
      'X-Forwarded-Port': '443',
    },
  })

  const seen = only(up.seen)
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
  assert.equal(seen.headers['x-forwarded-proto'], 'http')
  assert.equal(seen.headers['x-forwarded-host'], 'chat.example.com')
  assert.equal(seen.headers['x-forwarded-port'], String(port))
})

test('forward: X-Forwarded-For from a trustProxy address is kept and the peer appended', async (t) => {
  const up = await recordingUpstream(t)
  const { port } = await gatewayServer(t, { target: up.url, trustProxy: ['127.0.0.1'] })

  await send(port, { path: '/', headers: { 'X-Forwarded-For': '203.0.113.7, 10.0.0.2', 'X-Forwarded-Proto': 'https' } })

  const seen = only(up.seen)
  assert.equal(seen.headers['x-forwarded-for'], '203.0.113.7, 10.0.0.2, 127.0.0.1')
  assert.equal(seen.headers['x-forwarded-proto'], 'https')
})

// Routing

test('forward: stripPrefix removes the route prefix before the request reaches the upstream', async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await gatewayServer(t, { target: up.url, routes: [{ path: '/api', upstream: 'default', stripPrefix: true }] })

  await supertest(url).get('/api/users/7?full=1')
  await supertest(url).get('/api')
  await supertest(url).get('/api?x=1')

  assert.deepEqual(up.seen.map((s) => s.url), ['/users/7?full=1', '/', '/?x=1'])
})

test('forward: without stripPrefix the upstream sees the full path', async (t) => {
  const up = await recordingUpstream(t)
  const { url } = await gatewayServer(t, { target: up.url, routes: [{ path: '/api', upstream: 'default' }] })

  await supertest(url).get('/api/users/7?full=1')

  assert.equal(only(up.seen).url, '/api/users/7?full=1')
})

// Requests refused before any upstream is picked

test('forward: CONNECT is answered 400', async (t) => {
  const up = await recordingUpstream(t)
  const { port, gateway } = await gatewayServer(t, { target: up.url })
  const events = recordEvents(gateway)

  const { text } = await rawExchange(port, 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n')

  assert.equal(parseAnswer(text).status, 400)
  assert.equal(up.connections(), 0)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_BAD_REQUEST'])
})

test('forward: an absolute-form request target is answered 400 without contacting the upstream', async (t) => {
  const up = await recordingUpstream(t)
  const { port, gateway } = await gatewayServer(t, { target: up.url })
  const events = recordEvents(gateway)

  const { text } = await rawExchange(port, 'GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n')

  assert.equal(parseAnswer(text).status, 400)
  assert.equal(up.connections(), 0)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_BAD_REQUEST'])
})

test('forward: an Upgrade request without Connection: upgrade is answered 400 naming the missing header', async (t) => {
  const up = await recordingUpstream(t)
  const { port, gateway } = await gatewayServer(t, { target: up.url })
  const events = recordEvents(gateway)

  const { text } = await rawExchange(port, 'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: localhost\r\n' +
    'Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')

  const answer = parseAnswer(text)
  assert.equal(answer.status, 400)
  assert.match(answer.body, /Connection/)
  assert.match(answer.body, /upgrade/)
  assert.equal(up.connections(), 0)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_BAD_UPGRADE'])
})

test('forward: a pool with no available server answers 503 with Retry-After', async (t) => {
  const up = await recordingUpstream(t)
  const { url, gateway } = await gatewayServer(t, { upstreams: { socket_nodes: { servers: [{ url: up.url, down: true }] } } })
  const events = recordEvents(gateway)

  const res = await supertest(url).get('/')

  assert.equal(res.status, 503)
  assert.match(String(res.headers['retry-after']), /^\d+$/)
  assert.equal(up.connections(), 0)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_NO_UPSTREAM'])
})

// Engine.io

test('forward: Socket.IO over engine.io long-polling works through the gateway', async (t) => {
  const { io, url: upstreamUrl } = await socketIoUpstream(t)
  io.on('connection', (socket) => {
    socket.on('add', (a: number, b: number, ack: (sum: number) => void) => ack(a + b))
  })
  const { url, gateway } = await gatewayServer(t, { target: upstreamUrl })
  const events = recordEvents(gateway)
  const client = ioClient(url, { transports: ['polling'], reconnection: false })
  t.after(() => { client.close() })

  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve)
    client.once('connect_error', reject)
  })
  const sums: number[] = []
  for (let i = 0; i < 3; i++) sums.push(await client.emitWithAck('add', i, 10) as number)

  assert.deepEqual(sums, [10, 11, 12])
  assert.equal(client.io.engine.transport.name, 'polling')
  assert.deepEqual(events.errors, [])
  assert.equal(events.opened.length, 0)
})

test('forward: status() counts request and response body bytes', async (t) => {
  const upstream = await httpUpstream(t, (req, res) => {
    req.resume()
    req.on('end', () => res.end('x'.repeat(5000)))
  })
  const { url, gateway } = await gatewayServer(t, { target: upstream.url })
  const response = await fetch(url + '/count', { method: 'POST', body: 'y'.repeat(3000) })
  assert.equal((await response.text()).length, 5000)
  const [server] = gateway.status().pools.default!.servers
  assert.equal(server!.bytesIn, 3000)
  assert.equal(server!.bytesOut, 5000)
})

test('forward: a websocket upgrade on a server the gateway was never attached to gets a 400 naming attach()', async (t) => {
  const upstream = await httpUpstream(t, (_req, res) => { res.end('never') })
  const gateway = createGateway({ target: upstream.url })
  t.after(() => gateway.close())
  const server = http.createServer((req, res) => gateway.handleRequest(req, res))
  const port = await listen(t, server)
  const answer = await rawExchange(port, upgradeRequest('/socket.io/?EIO=4&transport=websocket'))
  assert.match(answer.text, /^HTTP\/1\.1 400 /)
  assert.match(answer.text, /attach\(server\)/)
})
