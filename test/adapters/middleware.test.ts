/**
 * What the framework did before sockgate is what the upstream gets: headers
 * an auth middleware edited, bodies a parser already read; and the failure
 * hooks as each framework expects them (Express's `next(err)`).
 */
import http from 'node:http'
import { gzipSync } from 'node:zlib'
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import express from 'express'
import Koa from 'koa'
import bodyParser from 'koa-bodyparser'
import request from 'supertest'
import type { Gateway, GatewayOptions } from '../../src/index.js'
import { sockgate as expressProxy } from '../../adapters/express.js'
import { sockgate as koaProxy } from '../../adapters/koa.js'
import { listen, recordEvents, refusedUrl, watchForCrashes } from '../helpers/servers.js'
import { wsRoundTrip } from './upstreams.js'

watchForCrashes()

interface Seen { method: string, url: string, rawHeaders: string[], body: string }

/** An upstream that answers with what it received, raw header list included; upgrades too (the headers they carried). */
async function mirror (t: TestContext): Promise<{ url: string, seen: Seen[] }> {
  const seen: Seen[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString() })
      res.writeHead(200, { 'content-type': 'text/plain' }).end('mirrored')
    })
  })
  server.on('upgrade', (req, socket) => {
    seen.push({ method: 'UPGRADE', url: req.url ?? '', rawHeaders: req.rawHeaders, body: '' })
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
  })
  const port = await listen(t, server)
  return { url: `http://127.0.0.1:${port}`, seen }
}

/**
 * `rawHeaders` as `Name: value` lines, for comparing order and spelling.
 * Host and Connection are left out: undici writes those two itself.
 */
function lines (raw: string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    if (!/^(host|connection)$/i.test(raw[i]!)) out.push(`${raw[i]}: ${raw[i + 1]}`)
  }
  return out
}

function header (seen: Seen, name: string): string | undefined {
  const i = seen.rawHeaders.findIndex((n, k) => k % 2 === 0 && n.toLowerCase() === name)
  return i === -1 ? undefined : seen.rawHeaders[i + 1]
}

async function serveExpress (t: TestContext, build: (app: express.Express) => void): Promise<string> {
  const app = express()
  build(app)
  const server = http.createServer(app)
  const port = await listen(t, server)
  return `http://127.0.0.1:${port}`
}

async function serveKoa (t: TestContext, build: (app: Koa) => void): Promise<string> {
  const app = new Koa()
  build(app)
  const port = await listen(t, http.createServer(app.callback()))
  return `http://127.0.0.1:${port}`
}

function closeAfter (t: TestContext, proxy: { gateway: Gateway }): void {
  t.after(() => proxy.gateway.close())
}

/** A raw request whose header lines keep the spelling and order given, so the test can see both survive. */
function rawGet (url: string, path: string, headerLines: string[]): Promise<number> {
  const { port } = new URL(url)
  return new Promise((resolve, reject) => {
    const req = http.request({ port, host: '127.0.0.1', path, headers: headerLines.map((l) => l.split(': ') as [string, string]).flat(), setHost: false })
    req.on('response', (res) => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', reject)
    req.end()
  })
}

// Headers edited by earlier middleware

test('express: headers an auth middleware adds, changes or deletes reach the upstream so; untouched ones keep case and order', async (t) => {
  const up = await mirror(t)
  const proxy = expressProxy({ target: up.url, headers: { xForwarded: false } })
  closeAfter(t, proxy)
  const url = await serveExpress(t, (app) => {
    app.use((req, _res, next) => {
      delete req.headers['x-secret']
      req.headers['x-user'] = 'alice'
      req.headers.accept = 'application/json'
      next()
    })
    app.use(proxy)
  })
  const status = await rawGet(url, '/me', ['host: example.test', 'X-Secret: hunter2', 'ACCEPT: */*', 'X-Trace-ID: abc', 'x-trace-id: def'])
  assert.equal(status, 200)
  assert.deepEqual(lines(up.seen[0]!.rawHeaders), ['ACCEPT: application/json', 'X-Trace-ID: abc', 'x-trace-id: def', 'x-user: alice'])
})

test('express: without edits the upstream gets the raw header list exactly as the client sent it', async (t) => {
  const up = await mirror(t)
  const proxy = expressProxy({ target: up.url, headers: { xForwarded: false } })
  closeAfter(t, proxy)
  const url = await serveExpress(t, (app) => app.use(proxy))
  await rawGet(url, '/', ['HOST: example.test', 'Accept: a', 'accept: b', 'Cookie: a=1', 'cookie: b=2'])
  assert.deepEqual(lines(up.seen[0]!.rawHeaders), ['Accept: a', 'accept: b', 'Cookie: a=1', 'cookie: b=2'])
})

test('koa: headers a Koa middleware edits in ctx.headers reach the upstream so', async (t) => {
  const up = await mirror(t)
  const proxy = koaProxy({ target: up.url })
  closeAfter(t, proxy)
  const url = await serveKoa(t, (app) => {
    app.use(async (ctx, next) => {
      delete ctx.headers.authorization
      ctx.headers['x-user'] = 'bob'
      await next()
    })
    app.use(proxy)
  })
  await request(url).get('/me').set('Authorization', 'Bearer secret-token').expect(200)
  assert.equal(header(up.seen[0]!, 'authorization'), undefined)
  assert.equal(header(up.seen[0]!, 'x-user'), 'bob')
})

test('authorize: headers it edits on an upgrade (the cookie turned into a user) reach the upstream', async (t) => {
  const up = await mirror(t)
  const options: GatewayOptions = {
    target: up.url,
    authorize: (req) => {
      if (req.headers.cookie !== 'session=s3cr3t') return false
      delete req.headers.cookie
      req.headers['x-user'] = 'carol'
      return true
    },
  }
  const proxy = expressProxy(options)
  closeAfter(t, proxy)
  const app = express()
  app.use(proxy)
  const server = http.createServer(app)
  proxy.attach(server)
  const port = await listen(t, server)
  const { WebSocket } = await import('ws')
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket`, { headers: { Cookie: 'session=s3cr3t' } })
  ws.on('error', () => {}) // the refused handshake ends in an error event too
  t.after(() => ws.terminate())
  const status = await new Promise<number>((resolve) => ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)))
  assert.equal(status, 403, 'the mirror refuses every upgrade, after recording it')
  assert.equal(up.seen[0]!.method, 'UPGRADE')
  assert.equal(header(up.seen[0]!, 'cookie'), undefined)
  assert.equal(header(up.seen[0]!, 'x-user'), 'carol')
})

// Bodies a parser already read

/** An Express app with `parsers` mounted before the proxy; returns its URL, the upstream and the gateway's events. */
async function parsedExpress (t: TestContext, ...parsers: express.RequestHandler[]) {
  const up = await mirror(t)
  const proxy = expressProxy({ target: up.url })
  closeAfter(t, proxy)
  const events = recordEvents(proxy.gateway)
  const url = await serveExpress(t, (app) => {
    for (const p of parsers) app.use(p)
    app.use(proxy)
  })
  return { url, up, events }
}

test('express: a body express.json() already read is sent on as JSON with a correct Content-Length', async (t) => {
  const { url, up } = await parsedExpress(t, express.json())
  await request(url).post('/api').set('content-type', 'application/json').send('{ "name": "Zoë", "n": [1, 2] }').expect(200)
  assert.deepEqual(JSON.parse(up.seen[0]!.body), { name: 'Zoë', n: [1, 2] })
  assert.equal(header(up.seen[0]!, 'content-length'), String(Buffer.byteLength(up.seen[0]!.body)))
})

test('express: a gzipped JSON body the parser inflated is sent plain, without Content-Encoding', async (t) => {
  const { url, up } = await parsedExpress(t, express.json())
  const res = await fetch(`${url}/api`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync('{"zipped":true}'),
  })
  assert.equal(res.status, 200)
  assert.deepEqual([up.seen[0]!.body, header(up.seen[0]!, 'content-encoding')], ['{"zipped":true}', undefined])
})

test('express: forms read by express.urlencoded() are sent on as forms, flat and extended', async (t) => {
  const flat = await parsedExpress(t, express.urlencoded({ extended: false }))
  await request(flat.url).post('/f').type('form').send('a=1&a=2&b=x+y').expect(200)
  assert.equal(flat.up.seen[0]!.body, 'a=1&a=2&b=x+y')
  const nested = await parsedExpress(t, express.urlencoded({ extended: true }))
  await request(nested.url).post('/f').type('form').send('user%5Bname%5D=Ann&user%5Btags%5D=a&user%5Btags%5D=b').expect(200)
  assert.equal(decodeURIComponent(nested.up.seen[0]!.body), 'user[name]=Ann&user[tags]=a&user[tags]=b')
})

test('express: text and raw bodies read by express.text() and express.raw() are sent byte for byte', async (t) => {
  const { url, up } = await parsedExpress(t, express.text(), express.raw({ type: 'application/octet-stream' }))
  await request(url).post('/t').set('content-type', 'text/plain').send('plain words').expect(200)
  await request(url).post('/r').set('content-type', 'application/octet-stream').send(Buffer.from([0, 1, 2, 255])).expect(200)
  assert.equal(up.seen[0]!.body, 'plain words')
  assert.deepEqual(Buffer.from(up.seen[1]!.body, 'latin1').length, 4)
  assert.equal(header(up.seen[1]!, 'content-length'), '4')
})

test('express: a body of a type the parser skips is streamed through untouched', async (t) => {
  const { url, up } = await parsedExpress(t, express.json())
  await request(url).post('/t').set('content-type', 'text/csv').send('a,b\n1,2\n').expect(200)
  assert.equal(up.seen[0]!.body, 'a,b\n1,2\n')
})

test('express: a body read and dropped (nothing to encode again) is a 500 SOCKGATE_ERR_BODY_CONSUMED, never an empty body', async (t) => {
  const drain: express.RequestHandler = (req, _res, next) => { req.resume(); req.on('end', () => next()) }
  const { url, up, events } = await parsedExpress(t, drain)
  const res = await request(url).post('/upload').set('content-type', 'multipart/form-data; boundary=x').send('--x--')
  assert.equal(res.status, 500)
  assert.deepEqual(up.seen, [])
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_BODY_CONSUMED'])
  assert.match(events.errors[0]!.error.message, /mount sockgate before the body parser/)
})

test('koa: a body koa-bodyparser read is sent on byte for byte, JSON and form alike', async (t) => {
  const up = await mirror(t)
  const proxy = koaProxy({ target: up.url })
  closeAfter(t, proxy)
  const url = await serveKoa(t, (app) => {
    app.use(bodyParser())
    app.use(proxy)
  })
  await request(url).post('/j').set('content-type', 'application/json').send('{ "spaced" :  true }').expect(200)
  await request(url).post('/f').type('form').send('a=1&b=two+words').expect(200)
  assert.deepEqual(up.seen.map((s) => s.body), ['{ "spaced" :  true }', 'a=1&b=two+words'])
  assert.equal(header(up.seen[0]!, 'content-length'), '20')
})

// Failures as the framework expects them

test('express: sockgate(opts, { next: true }) hands a 502 to the app\'s error handler', async (t) => {
  const dead = await refusedUrl()
  const proxy = expressProxy({ target: dead }, { next: true })
  closeAfter(t, proxy)
  const url = await serveExpress(t, (app) => {
    app.use(proxy)
    app.use((err: { statusCode: number, code: string }, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(err.statusCode).send(`our page: ${err.code}`)
    })
  })
  const res = await request(url).get('/x')
  assert.deepEqual([res.status, res.text], [502, 'our page: SOCKGATE_ERR_UPSTREAM_CONNECT'])
})

test('express: without { next: true } the gateway answers failures itself and the error handler is not called', async (t) => {
  const dead = await refusedUrl()
  const proxy = expressProxy({ target: dead })
  closeAfter(t, proxy)
  let called = false
  const url = await serveExpress(t, (app) => {
    app.use(proxy)
    app.use((_err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => { called = true; res.status(599).end() })
  })
  assert.equal((await request(url).get('/x')).status, 502)
  assert.equal(called, false)
})

test('express: an unknown middleware option is refused, naming it', () => {
  assert.throws(() => expressProxy({ target: 'http://127.0.0.1:1' }, { nxt: true } as never), { code: 'SOCKGATE_ERR_INVALID_OPTION', message: /^nxt is not a middleware option/ })
})

test('koa: onError answers a failure with the app\'s own page', async (t) => {
  const dead = await refusedUrl()
  const proxy = koaProxy({
    target: dead,
    onError: (err, _req, target) => {
      if ('writeHead' in target) target.writeHead(err.statusCode, { 'content-type': 'text/plain' }).end('koa page')
    },
  })
  closeAfter(t, proxy)
  const url = await serveKoa(t, (app) => app.use(proxy))
  const res = await request(url).get('/x')
  assert.deepEqual([res.status, res.text], [502, 'koa page'])
})

test('express and koa: authorize refuses an upgrade without the session cookie before the upstream is dialled', async (t) => {
  const up = await mirror(t)
  const options: GatewayOptions = { target: up.url, authorize: (req) => req.headers.cookie === 'session=ok' }
  const e = expressProxy(options)
  const k = koaProxy(options)
  closeAfter(t, e)
  closeAfter(t, k)
  const expressServer = http.createServer(express().use(e))
  e.attach(expressServer)
  const koaServer = http.createServer(new Koa().use(k).callback())
  k.attach(koaServer)
  for (const server of [expressServer, koaServer]) {
    const port = await listen(t, server)
    assert.equal(await wsRoundTrip(t, `http://127.0.0.1:${port}/ws`), 'HTTP 403')
  }
  assert.deepEqual(up.seen, [])
})
