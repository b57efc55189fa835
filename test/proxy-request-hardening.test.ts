/**
 * The HTTP forwarding path under hostile or broken peers (issue 9): a
 * connection cap per server, a send deadline for clients that stop reading,
 * replay only of what is safe, bad answers that are not the server's fault
 * for passive health, 304/204/HEAD with Content-Length, and 1xx answers.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import net from 'node:net'
import type { TestContext } from 'node:test'
import type { Gateway } from '../src/index.js'
import {
  eventually, gatewayServer, httpUpstream, parseAnswer, rawClient, rawUpstream, recordEvents, refusedUrl, watchForCrashes,
} from './helpers/servers.js'
import { request } from './helpers/balance.js'

watchForCrashes()

/** An upstream that answers `200 <name>` once the whole request body is in, and counts requests by method. */
async function countingUpstream (t: TestContext, name = 'healthy'): Promise<{ url: string, seen: (method?: string) => number }> {
  const methods: string[] = []
  const { url } = await httpUpstream(t, (req, res) => {
    req.resume()
    req.on('end', () => {
      methods.push(req.method ?? '')
      res.end(name)
    })
  })
  return { url, seen: (method) => methods.filter((m) => method === undefined || m === method).length }
}

/** An upstream that reads the whole request, then resets the connection instead of answering: it did process it. */
async function resettingUpstream (t: TestContext): Promise<{ url: string, seen: () => number }> {
  let seen = 0
  const { url } = await httpUpstream(t, (req) => {
    req.resume()
    req.on('end', () => {
      seen++
      req.socket.resetAndDestroy()
    })
  })
  return { url, seen: () => seen }
}

/** A raw upstream that writes `answer` for every request head it reads (requests without bodies only). */
async function scriptedUpstream (t: TestContext, answer: string): Promise<{ url: string, seen: () => number }> {
  let seen = 0
  const { url } = await rawUpstream(t, (socket) => {
    let pending = ''
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1')
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        pending = pending.slice(end + 4)
        seen++
        socket.write(answer)
      }
    })
  })
  return { url, seen: () => seen }
}

/** The one server of the `default` pool, or the server at `i`. */
function serverStatus (gateway: Gateway, i = 0) {
  return gateway.status().pools.default!.servers[i]!
}

/**
 * Send `requests` one after the other on one client connection, each once
 * the previous answer's head has arrived (answers without bodies only).
 * Returns the answers and whether the connection was still open at the end.
 */
async function inTurn (t: TestContext, port: number, requests: string[]): Promise<{ answers: string[], open: boolean }> {
  const client = await rawClient(t, port)
  for (const [i, req] of requests.entries()) {
    client.socket.write(req)
    const heads = i + 1
    assert.ok(await eventually(() => client.text().split('\r\n\r\n').length > heads || client.isClosed()),
      `no answer to request ${heads}: ${JSON.stringify(client.text())}`)
  }
  const text = client.text()
  const answers = text.split(/(?=HTTP\/1\.1 \d{3} )/)
  return { answers, open: !client.isClosed() }
}

// 1. A connection cap per server

test('connections: 20 concurrent requests to a server with connections: 2 use at most 2 upstream connections, and all are answered', async (t) => {
  let open = 0
  let most = 0
  const { server, url: upstream } = await httpUpstream(t, (req, res) => {
    req.resume()
    // Slow enough that the requests overlap.
    setTimeout(() => res.end('ok'), 30)
  })
  server.on('connection', (socket) => {
    open++
    most = Math.max(most, open)
    socket.on('close', () => { open-- })
  })
  const { port } = await gatewayServer(t, { target: upstream, connections: 2 })

  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => request(port, `/n/${i}`)))

  assert.deepEqual(answers.map((a) => a.status), Array(20).fill(200))
  assert.ok(most <= 2, `${most} upstream connections were open at once`)
})

// 2. The send deadline

test('send deadline: a client that stops reading is cut after timeouts.send, and the upstream request is aborted with it', async (t) => {
  const total = 64 * 1024 * 1024
  let upstreamCut = false
  const { url: upstream } = await httpUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) })
    const chunk = Buffer.alloc(65_536, 0x61)
    let sent = 0
    const pump = (): void => {
      while (sent < total && !res.destroyed) {
        sent += chunk.length
        if (!res.write(chunk)) {
          res.once('drain', pump)
          return
        }
      }
      res.end()
    }
    res.on('close', () => { upstreamCut = !res.writableFinished })
    pump()
  })
  const { port, gateway } = await gatewayServer(t, { target: upstream, timeouts: { send: 300 } })
  const events = recordEvents(gateway)
  // A client that sends its request and never reads: no 'data' listener, so the socket is never read from.
  const client = net.connect(port, '127.0.0.1')
  t.after(() => { client.destroy() })
  client.on('error', () => {})
  let clientClosed = false
  client.once('close', () => { clientClosed = true })
  client.write('GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n')

  assert.ok(await eventually(() => upstreamCut), 'the upstream response was never aborted')
  assert.ok(await eventually(() => events.errors.length > 0), 'nothing was reported')
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_CLIENT_TIMEOUT'])
  assert.match(events.errors[0]!.error.message, /timeouts\.send \(300 ms\)/)
  assert.ok(await eventually(() => serverStatus(gateway).activeRequests === 0), 'the request still counts as active')

  // Reading again, the client finds its connection ended short of the body.
  let received = 0
  client.on('data', (c: Buffer) => { received += c.length })
  assert.ok(await eventually(() => clientClosed, 10_000), 'the client connection was not closed')
  assert.ok(received < total, 'the whole body arrived')
})

// 3. Replay only what is safe

test('replay: a POST that reached a server which then reset is answered 502 and not sent to the next server', async (t) => {
  const first = await resettingUpstream(t)
  const healthy = await countingUpstream(t)
  const { port, gateway } = await gatewayServer(t, { target: [first.url, { url: healthy.url, backup: true }] })
  const events = recordEvents(gateway)

  const res = await request(port, '/charge', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'one charge' })

  assert.equal(res.status, 502)
  assert.equal(first.seen(), 1)
  assert.equal(healthy.seen('POST'), 0, 'the POST was replayed on the next server')
  assert.equal(serverStatus(gateway, 0).failures, 1, 'the server that reset counts a failure')
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_CONNECT'])
})

test('replay: with retryNonIdempotent a POST that reached a server which then reset goes to the next server', async (t) => {
  const first = await resettingUpstream(t)
  const healthy = await countingUpstream(t)
  const { port, gateway } = await gatewayServer(t, { target: [first.url, { url: healthy.url, backup: true }], retryNonIdempotent: true })

  const res = await request(port, '/charge', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'one charge' })

  assert.deepEqual({ status: res.status, body: res.body }, { status: 200, body: 'healthy' })
  assert.equal(healthy.seen('POST'), 1)
  assert.equal(serverStatus(gateway, 0).failures, 1)
})

test('replay: a GET that reached a server which then reset goes to the next server', async (t) => {
  const first = await resettingUpstream(t)
  const healthy = await countingUpstream(t)
  const { port, gateway } = await gatewayServer(t, { target: [first.url, { url: healthy.url, backup: true }] })

  const res = await request(port, '/page')

  assert.deepEqual({ status: res.status, body: res.body }, { status: 200, body: 'healthy' })
  assert.equal(first.seen(), 1)
  assert.equal(serverStatus(gateway, 0).failures, 1)
})

test('replay: a POST to a server that refuses the connection goes to the next server', async (t) => {
  const healthy = await countingUpstream(t)
  const { port, gateway } = await gatewayServer(t, { target: [await refusedUrl(), { url: healthy.url, backup: true }] })

  const res = await request(port, '/charge', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'one charge' })

  assert.deepEqual({ status: res.status, body: res.body }, { status: 200, body: 'healthy' })
  assert.equal(healthy.seen('POST'), 1)
  assert.equal(serverStatus(gateway, 0).failures, 1)
})

// 4. A bad answer is one 502, not a failure of the server

test('bad answer: response headers past the limit are one 502, sent to one server only, and every server stays up', async (t) => {
  const hits = [0, 0, 0]
  const urls: string[] = []
  for (const i of [0, 1, 2]) {
    const { url } = await httpUpstream(t, (req, res) => {
      hits[i]!++
      const q = new URL(req.url ?? '/', 'http://x').searchParams.get('q') ?? ''
      // Echoed twice: together past undici's response header limit (16 KiB), each alone within Node's request limit.
      res.writeHead(200, { 'x-echo': q, 'x-echo-again': q })
      res.end('ok')
    })
    urls.push(url)
  }
  const { port, gateway } = await gatewayServer(t, { target: urls })
  const events = recordEvents(gateway)

  const res = await request(port, `/search?q=${'a'.repeat(9_000)}`)

  assert.equal(res.status, 502)
  assert.equal(hits[0]! + hits[1]! + hits[2]!, 1, `the request reached ${hits.join('+')} servers`)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_PROTOCOL'])
  assert.match(events.errors[0]!.error.message, /header/)
  const servers = gateway.status().pools.default!.servers
  assert.deepEqual(servers.map((s) => [s.state, s.failures]), [['up', 0], ['up', 0], ['up', 0]])
})

// 6. 304, 204 and HEAD with Content-Length

/** Answers without a body, each given twice on one client connection: what the client must see of each. */
const NO_BODY: Array<{ what: string, upstream: string, request: string, seen: (a: ReturnType<typeof parseAnswer>) => unknown[], want: unknown[] }> = [
  {
    what: 'a 304 with Content-Length reaches the client as it is',
    upstream: 'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1234\r\n\r\n',
    request: 'GET /app.js HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: "v1"\r\n\r\n',
    seen: (a) => [a.status, a.headers.etag, a.headers['content-length'], a.body],
    want: [304, '"v1"', '1234', ''],
  },
  {
    // RFC 9110 §8.6: a 204 never carries Content-Length, whatever the upstream wrote.
    what: 'a 204 with Content-Length reaches the client without a body or the Content-Length',
    upstream: 'HTTP/1.1 204 No Content\r\nX-Saved: 7\r\nContent-Length: 5\r\n\r\n',
    request: 'DELETE /items/7 HTTP/1.1\r\nHost: localhost\r\n\r\n',
    seen: (a) => [a.status, a.headers['x-saved'], a.headers['content-length'], a.body],
    want: [204, '7', undefined, ''],
  },
  {
    what: 'the answer to a HEAD keeps its Content-Length and has no body',
    upstream: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n',
    request: 'HEAD /report.txt HTTP/1.1\r\nHost: localhost\r\n\r\n',
    seen: (a) => [a.status, a.headers['content-length'], a.body],
    want: [200, '1234', ''],
  },
]

for (const { what, upstream, request: sent, seen, want } of NO_BODY) {
  test(`no body: ${what}, and the connection stays usable`, async (t) => {
    const up = await scriptedUpstream(t, upstream)
    const { port, gateway } = await gatewayServer(t, { target: up.url })
    const events = recordEvents(gateway)

    const { answers, open } = await inTurn(t, port, [sent, sent])

    assert.equal(answers.length, 2, JSON.stringify(answers))
    for (const text of answers) assert.deepEqual(seen(parseAnswer(text)), want)
    assert.ok(open, 'the client connection was closed')
    assert.deepEqual(events.errors, [])
    assert.equal(serverStatus(gateway).failures, 0)
  })
}

// 13. 1xx answers

for (const informational of ['102 Processing', '103 Early Hints']) {
  test(`1xx: a ${informational} before the answer is skipped and the final answer relayed`, async (t) => {
    const up = await scriptedUpstream(t, `HTTP/1.1 ${informational}\r\nLink: </app.css>; rel=preload\r\n\r\n` +
      'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok')
    const { port, gateway } = await gatewayServer(t, { target: up.url })
    const events = recordEvents(gateway)

    const res = await request(port, '/')

    assert.deepEqual({ status: res.status, body: res.body }, { status: 200, body: 'ok' })
    assert.deepEqual(events.errors, [])
  })
}

test('1xx: an unsolicited 100 Continue is one 502 naming it, not retried, and no failure of the server', async (t) => {
  const first = await scriptedUpstream(t, 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
  const healthy = await countingUpstream(t)
  const { port, gateway } = await gatewayServer(t, { target: [first.url, { url: healthy.url, backup: true }] })
  const events = recordEvents(gateway)

  const res = await request(port, '/')

  assert.equal(res.status, 502)
  assert.equal(first.seen(), 1)
  assert.equal(healthy.seen(), 0, 'the request was retried on the next server')
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_PROTOCOL'])
  assert.match(events.errors[0]!.error.message, /unsolicited 100 Continue/)
  assert.deepEqual([serverStatus(gateway, 0).state, serverStatus(gateway, 0).failures], ['up', 0])
})

// 14. Failover on a response-header timeout

/** A server that accepts, reads the request and never answers, and a healthy backup behind it. */
async function hungThenHealthy (t: TestContext) {
  const hung = await rawUpstream(t, () => { /* reads, never answers */ })
  const healthy = await countingUpstream(t)
  const gw = await gatewayServer(t, {
    target: [hung.url, { url: healthy.url, backup: true }],
    failoverTimeout: 5_000,
    timeouts: { request: 300 },
  })
  return { healthy, ...gw }
}

test('header timeout: a GET to a server that never answers gets the next server\'s answer, and the hung server counts a failure', async (t) => {
  const { healthy, port, gateway } = await hungThenHealthy(t)

  const res = await request(port, '/page')

  assert.deepEqual({ status: res.status, body: res.body }, { status: 200, body: 'healthy' })
  assert.equal(healthy.seen('GET'), 1)
  assert.equal(serverStatus(gateway, 0).failures, 1)
})

test('header timeout: a POST to a server that never answers gets 504 and is not sent to the next server', async (t) => {
  const { healthy, port, gateway } = await hungThenHealthy(t)
  const events = recordEvents(gateway)

  const res = await request(port, '/charge', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'one charge' })

  assert.equal(res.status, 504)
  assert.equal(healthy.seen('POST'), 0, 'the POST was replayed on the next server')
  assert.equal(serverStatus(gateway, 0).failures, 1)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_TIMEOUT'])
})

// A request undici refuses to build (what a hook left in req.headers or req.url)

for (const [what, edit] of [
  ['a header value with a character past Latin-1', (req: IncomingMessage) => { req.headers['x-user'] = 'caf\u20ac' }],
  ['a path with a space', (req: IncomingMessage) => { req.url = '/a b' }],
] as const) {
  test(`unsendable: a request authorize left with ${what} gets 400, and the server is not blamed`, async (t) => {
    const upstream = await countingUpstream(t)
    const { port, gateway } = await gatewayServer(t, { target: upstream.url, authorize: (req) => { edit(req); return true } })
    const events = recordEvents(gateway)
    const res = await request(port, '/')
    assert.equal(res.status, 400)
    assert.match(res.body, /cannot be sent upstream/)
    assert.equal(upstream.seen(), 0)
    assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_BAD_REQUEST'])
    assert.deepEqual([serverStatus(gateway).state, serverStatus(gateway).failures], ['up', 0])
  })
}
