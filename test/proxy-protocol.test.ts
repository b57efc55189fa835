/**
 * PROXY protocol (proxyProtocol): the parser on plain bytes, then real
 * servers fed by raw `net` sockets that write a v1 or v2 header first, the
 * way a TCP load balancer does. The addresses in the headers are data: any
 * values will do, since every connection really comes from 127.0.0.1.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import express from 'express'
import Koa from 'koa'
import Fastify from 'fastify'
import { WebSocket, WebSocketServer } from 'ws'
import { createGateway, type GatewayOptions, type Logger, type ProxyErrorEvent } from '../src/index.js'
import { parseProxyHeader, proxyHeaderVersion, V1_MAX_LENGTH, V2_MAX_LENGTH, type ProxyHeaderParse } from '../src/proxy-protocol.js'
import { sockgate as expressProxy } from '../adapters/express.js'
import { sockgate as koaProxy, listen as koaListen } from '../adapters/koa.js'
import sockgatePlugin from '../adapters/fastify.js'
import http2 from 'node:http2'
import { bodyOf, CA, extendedConnect, frames, KEY_CERT } from './helpers/http2.js'
import { eventually, gatewayServer, httpUpstream, listen, rawExchange, recordEvents, watchForCrashes } from './helpers/servers.js'

watchForCrashes()

const fixture = (name: string): string => readFileSync(new URL(`fixtures/tls/${name}`, import.meta.url), 'utf8')

// ---------------------------------------------------------------- headers, as a balancer writes them

function v1 (source = '203.0.113.7', proto = 'TCP4', destination = proto === 'TCP6' ? '2001:db8::1' : '192.0.2.1'): Buffer {
  return Buffer.from(`PROXY ${proto} ${source} ${destination} 51000 443\r\n`, 'latin1')
}

const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex')

/** A v2 header: `command` 0 LOCAL / 1 PROXY, `family` byte, the address block and any TLVs after it. */
function v2 (command: number, family: number, block: Buffer, tlvs = Buffer.alloc(0), version = 2): Buffer {
  const length = Buffer.alloc(2)
  length.writeUInt16BE(block.length + tlvs.length)
  return Buffer.concat([SIGNATURE, Buffer.from([(version << 4) | command, family]), length, block, tlvs])
}

function ports (source: number, destination: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt16BE(source, 0)
  b.writeUInt16BE(destination, 2)
  return b
}

const v2Tcp4 = (source = [198, 51, 100, 23]): Buffer => v2(1, 0x11, Buffer.concat([Buffer.from(source), Buffer.from([192, 0, 2, 1]), ports(40000, 443)]))
/** 2001:db8::7 → 2001:db8::1, with one TLV (an AWS-style endpoint id) that must be skipped. */
const v2Tcp6 = (): Buffer => v2(1, 0x21, Buffer.concat([
  Buffer.from('20010db8000000000000000000000007', 'hex'), Buffer.from('20010db8000000000000000000000001', 'hex'), ports(40001, 443),
]), Buffer.concat([Buffer.from([0xea, 0x00, 0x09, 0x01]), Buffer.from('vpce-1234', 'latin1')]))
const v2Local = (): Buffer => v2(0, 0x00, Buffer.alloc(0))

function done (parse: ProxyHeaderParse): Extract<ProxyHeaderParse, { state: 'done' }> {
  assert.equal(parse.state, 'done', JSON.stringify(parse))
  return parse as Extract<ProxyHeaderParse, { state: 'done' }>
}

// ---------------------------------------------------------------- the parser

test('proxy-protocol: a v1 TCP4 line names the source and ends where the client bytes begin', () => {
  const bytes = Buffer.concat([v1(), Buffer.from('GET / HTTP/1.1\r\n')])
  const parse = done(parseProxyHeader(bytes))
  assert.deepEqual(parse.header, {
    command: 'proxy', version: 1, family: 'IPv4', sourceAddress: '203.0.113.7', sourcePort: 51000, destinationAddress: '192.0.2.1', destinationPort: 443,
  })
  assert.equal(bytes.subarray(parse.length).toString(), 'GET / HTTP/1.1\r\n')
})

test('proxy-protocol: a v1 TCP6 line names an IPv6 source', () => {
  const parse = done(parseProxyHeader(v1('2001:db8::7', 'TCP6')))
  assert.equal(parse.header.command === 'proxy' && parse.header.sourceAddress, '2001:db8::7')
})

test('proxy-protocol: v1 UNKNOWN is complete whatever follows it on the line', () => {
  const line = Buffer.from('PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\nGET')
  const parse = done(parseProxyHeader(line))
  assert.deepEqual(parse.header, { command: 'unknown', version: 1 })
  assert.equal(parse.length, line.length - 3)
})

test('proxy-protocol: malformed v1 lines are invalid with the reason', () => {
  const cases: Array<[string, RegExp]> = [
    ['PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\n', /CRLF/],
    ['PROXY TCP5 203.0.113.7 192.0.2.1 51000 443\r\n', /unknown v1 protocol "TCP5"/],
    ['PROXY TCP4 203.0.113.7  192.0.2.1 51000 443\r\n', /single-spaced/],
    ['PROXY TCP4 2001:db8::7 192.0.2.1 51000 443\r\n', /must be IPv4/],
    ['PROXY TCP6 203.0.113.7 2001:db8::1 51000 443\r\n', /must be IPv6/],
    ['PROXY TCP4 203.0.113.7 192.0.2.1 65536 443\r\n', /0 to 65535/],
    ['PROXY TCP4 203.0.113.7 192.0.2.1 0443 443\r\n', /0 to 65535/],
    [`PROXY UNKNOWN ${'x'.repeat(V1_MAX_LENGTH)}\r\n`, /within 107 bytes/],
  ]
  for (const [line, reason] of cases) {
    const parse = parseProxyHeader(Buffer.from(line))
    assert.equal(parse.state, 'invalid', line)
    assert.match((parse as { reason: string }).reason, reason, line)
  }
})

test('proxy-protocol: v2 TCP over IPv4 and IPv6 name the source; TLVs are skipped', () => {
  const four = done(parseProxyHeader(v2Tcp4()))
  assert.deepEqual(four.header, {
    command: 'proxy', version: 2, family: 'IPv4', sourceAddress: '198.51.100.23', sourcePort: 40000, destinationAddress: '192.0.2.1', destinationPort: 443,
  })
  const header = v2Tcp6()
  const six = done(parseProxyHeader(Buffer.concat([header, Buffer.from('GET')])))
  assert.equal(six.length, header.length)
  assert.equal(six.header.command === 'proxy' && six.header.sourceAddress, '2001:db8::7')
})

test('proxy-protocol: v2 IPv6 sources are written as Node writes them (RFC 5952, IPv4-mapped as dotted)', () => {
  const source = (hex: string): string => {
    const parse = done(parseProxyHeader(v2(1, 0x21, Buffer.concat([Buffer.from(hex, 'hex'), Buffer.alloc(16), ports(1, 2)]))))
    return parse.header.command === 'proxy' ? parse.header.sourceAddress : ''
  }
  assert.equal(source('00000000000000000000000000000001'), '::1')
  assert.equal(source('20010db8000000010000000000000000'), '2001:db8:0:1::')
  assert.equal(source('20010db8000000000001000000000001'), '2001:db8::1:0:0:1')
  assert.equal(source('20010db800010002000300040005abcd'), '2001:db8:1:2:3:4:5:abcd')
  assert.equal(source('00000000000000000000ffffc6336417'), '::ffff:198.51.100.23')
})

test('proxy-protocol: v2 LOCAL, UNSPEC, UDP and UNIX keep the peer as the client', () => {
  assert.deepEqual(done(parseProxyHeader(v2Local())).header, { command: 'local', version: 2 })
  // LOCAL ignores whatever address block it carries.
  assert.deepEqual(done(parseProxyHeader(v2(0, 0x11, Buffer.alloc(12)))).header, { command: 'local', version: 2 })
  for (const family of [0x00, 0x12, 0x22, 0x31, 0x32]) {
    assert.deepEqual(done(parseProxyHeader(v2(1, family, Buffer.alloc(family >= 0x31 ? 216 : 0)))).header, { command: 'unknown', version: 2 })
  }
})

test('proxy-protocol: malformed v2 headers are invalid with the reason', () => {
  const cases: Array<[Buffer, RegExp]> = [
    [v2(1, 0x11, Buffer.alloc(12), undefined, 1), /version 1/],
    [v2(2, 0x11, Buffer.alloc(12)), /command 2/],
    [v2(1, 0x11, Buffer.alloc(8)), /12 bytes/],
    [v2(1, 0x21, Buffer.alloc(12)), /36 bytes/],
    [v2(1, 0x41, Buffer.alloc(12)), /0x41/],
    [v2(1, 0x11, Buffer.alloc(V2_MAX_LENGTH)), /longer than the 4096/],
  ]
  for (const [bytes, reason] of cases) {
    const parse = parseProxyHeader(bytes)
    assert.equal(parse.state, 'invalid', reason.source)
    assert.match((parse as { reason: string }).reason, reason)
  }
})

test('proxy-protocol: a header longer than the bound is refused from its length field, before its bytes arrive', () => {
  const fixed = v2(1, 0x11, Buffer.alloc(V2_MAX_LENGTH)).subarray(0, 16)
  assert.equal(parseProxyHeader(fixed).state, 'invalid')
})

test('proxy-protocol: every first part of a header asks for more, in both versions', () => {
  for (const header of [v1(), v1('2001:db8::7', 'TCP6'), v2Tcp4(), v2Tcp6(), v2Local()]) {
    for (let n = 0; n < header.length; n++) assert.equal(parseProxyHeader(header.subarray(0, n)).state, 'more', `${n} of ${header.length} bytes`)
    assert.equal(parseProxyHeader(header).state, 'done')
  }
})

test('proxy-protocol: HTTP and TLS first bytes are no header, as soon as they differ', () => {
  assert.equal(proxyHeaderVersion(Buffer.from('GET / HTTP/1.1')), 'none')
  assert.equal(proxyHeaderVersion(Buffer.from('PROPFIND')), 'none')
  assert.equal(proxyHeaderVersion(Buffer.from([0x16, 0x03, 0x01])), 'none')
  assert.equal(proxyHeaderVersion(Buffer.from('\r\nGET')), 'none')
  assert.equal(proxyHeaderVersion(Buffer.from('PRO')), 'more')
  assert.equal(proxyHeaderVersion(Buffer.from('\r\n')), 'more')
  assert.equal(parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n')).state, 'absent')
})

// ---------------------------------------------------------------- real servers

/** An upstream that answers with the forwarding headers it got. */
async function whoUpstream (t: TestContext): Promise<string> {
  const { url } = await httpUpstream(t, (req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ xff: req.headers['x-forwarded-for'], proto: req.headers['x-forwarded-proto'], real: req.headers['x-real-ip'] }))
  })
  return url
}

/** A gateway on a plain http server (attached) in front of `whoUpstream`, taking headers from loopback peers. */
async function proxiedGateway (t: TestContext, options: Partial<GatewayOptions> = {}) {
  const target = await whoUpstream(t)
  const g = await gatewayServer(t, { target, proxyProtocol: { trusted: ['127.0.0.1', '::1'] }, headers: { xRealIp: true }, ...options })
  return { ...g, events: recordEvents(g.gateway) }
}

/**
 * A loopback connection to `port` that has written `header` before anything
 * else, as a balancer's does. Connected first: a client's request written
 * while the socket still connects can overtake bytes written before it.
 */
async function connectWith (port: number, header: Buffer): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  if (header.length > 0) await new Promise((resolve) => socket.write(header, resolve))
  return socket
}

/** GET `path` over a connection that starts with `header`; the status and the body. */
async function getThrough (port: number, header: Buffer, path = '/'): Promise<{ status: number, body: string }> {
  const socket = await connectWith(port, header)
  return await new Promise((resolve, reject) => {
    const req = http.get({ port, path, createConnection: () => socket }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    // A bounded wait: a connection the gateway neither answers nor closes fails the test instead of hanging it.
    req.setTimeout(5_000, () => req.destroy(new Error('no answer within 5 s')))
    req.on('error', reject)
  })
}

async function forwardedFor (port: number, header: Buffer): Promise<string> {
  const answer = await getThrough(port, header)
  assert.equal(answer.status, 200, answer.body)
  return (JSON.parse(answer.body) as { xff: string }).xff
}

/** Whether `socket` closes within `ms`: false rather than a hang. */
function closedWithin (socket: net.Socket, ms = 5_000): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    socket.once('close', () => { clearTimeout(timer); resolve(true) })
  })
}

function connections (server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((err, n) => err === null ? resolve(n) : reject(err)))
}

/** No connection left on `server` (refused ones included): the reader leaks no socket. */
async function assertNoConnections (server: net.Server): Promise<void> {
  let open = -1
  const until = Date.now() + 5_000
  while (Date.now() < until && (open = await connections(server)) > 0) await new Promise((resolve) => setTimeout(resolve, 20))
  assert.equal(open, 0, `${open} connections left open`)
}

test('proxy-protocol: a v1 TCP4 source is the X-Forwarded-For and X-Real-IP the upstream gets', async (t) => {
  const { port, server } = await proxiedGateway(t)
  const answer = await getThrough(port, v1('203.0.113.7'))
  assert.deepEqual(JSON.parse(answer.body), { xff: '203.0.113.7', proto: 'http', real: '203.0.113.7' })
  await assertNoConnections(server)
})

test('proxy-protocol: a v2 TCP over IPv6 source (with TLVs) is the client', async (t) => {
  const { port } = await proxiedGateway(t)
  assert.equal(await forwardedFor(port, v2Tcp6()), '2001:db8::7')
})

test('proxy-protocol: an IPv4-mapped v2 source reaches the upstream as plain IPv4', async (t) => {
  const { port } = await proxiedGateway(t)
  const mapped = v2(1, 0x21, Buffer.concat([Buffer.from('00000000000000000000ffffc6336417', 'hex'), Buffer.alloc(16), ports(1, 2)]))
  assert.equal(await forwardedFor(port, mapped), '198.51.100.23')
})

test('proxy-protocol: v1 UNKNOWN and v2 LOCAL keep the peer\'s own address', async (t) => {
  const { port } = await proxiedGateway(t)
  assert.equal(await forwardedFor(port, Buffer.from('PROXY UNKNOWN\r\n')), '127.0.0.1')
  assert.equal(await forwardedFor(port, v2Local()), '127.0.0.1')
})

test('proxy-protocol: a header split across many writes, and the request in the same write as its end, both arrive whole', async (t) => {
  const { port } = await proxiedGateway(t)
  const header = v2Tcp4([198, 51, 100, 99])
  const request = Buffer.from('GET /split HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
  const socket = net.connect(port, '127.0.0.1')
  t.after(() => { socket.destroy() })
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  const closed = closedWithin(socket)
  await new Promise((resolve) => socket.once('connect', resolve))
  // One byte per write, each sent on its own turn, then the header's last byte with the whole request.
  for (const byte of header.subarray(0, -1)) {
    socket.write(Buffer.from([byte]))
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  socket.write(Buffer.concat([header.subarray(-1), request]))
  assert.equal(await closed, true, 'the gateway never answered and closed')
  const text = Buffer.concat(chunks).toString()
  assert.match(text, /^HTTP\/1\.1 200/)
  assert.match(text, /"xff":"198\.51\.100\.99"/)
})

test('proxy-protocol: keep-alive requests after the header all carry its source', async (t) => {
  const { port } = await proxiedGateway(t)
  const socket = await connectWith(port, v1('203.0.113.50'))
  t.after(() => { socket.destroy() })
  let text = ''
  socket.on('data', (c: Buffer) => { text += c.toString() })
  socket.write('GET /1 HTTP/1.1\r\nHost: localhost\r\n\r\n')
  socket.write('GET /2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
  assert.equal(await closedWithin(socket), true, 'the gateway never answered and closed')
  assert.equal(text.match(/"xff":"203\.0\.113\.50"/g)?.length, 2, text)
})

/** What a refused connection looks like: closed with no byte written, one `proxy:error` with the code, nothing left open. */
async function assertRefused (gateway: { events: { errors: ProxyErrorEvent[] }, server: net.Server, port: number }, bytes: Buffer, reason: RegExp): Promise<void> {
  const { text, closed } = await rawExchange(gateway.port, bytes)
  assert.equal(closed, true, 'the connection was left open')
  assert.equal(text, '', 'a refused connection gets no answer')
  assert.ok(await eventually(() => gateway.events.errors.length > 0))
  const [event] = gateway.events.errors
  assert.equal(event?.error.code, 'SOCKGATE_ERR_PROXY_PROTOCOL')
  assert.equal(event?.kind, 'connection')
  assert.equal(event?.clientAddress, '127.0.0.1')
  assert.match(event?.error.message ?? '', reason)
  await assertNoConnections(gateway.server)
}

test('proxy-protocol: a trusted peer whose connection starts with a plain request is cut, naming the fix', async (t) => {
  const g = await proxiedGateway(t)
  await assertRefused(g, Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'), /did not start with a PROXY protocol header.*Turn on PROXY protocol/)
})

test('proxy-protocol: a trusted peer sending a malformed header is cut with the reason', async (t) => {
  const g = await proxiedGateway(t)
  await assertRefused(g, Buffer.from('PROXY TCP4 not-an-address 192.0.2.1 1 2\r\nGET / HTTP/1.1\r\n\r\n'), /malformed PROXY protocol header \(the addresses/)
})

test('proxy-protocol: garbage that never ends a v1 line is cut at 107 bytes', async (t) => {
  const g = await proxiedGateway(t)
  await assertRefused(g, Buffer.from(`PROXY ${'A'.repeat(500)}`), /within 107 bytes/)
})

test('proxy-protocol: a trusted peer that stalls inside its header is cut at proxyProtocol.timeout', async (t) => {
  const g = await proxiedGateway(t, { proxyProtocol: { trusted: ['127.0.0.1'], timeout: 200 } })
  await assertRefused(g, v2Tcp4().subarray(0, 10), /no complete PROXY protocol header within proxyProtocol\.timeout \(200 ms\)/)
})

test('proxy-protocol: a trusted peer that sends nothing is cut at proxyProtocol.timeout', async (t) => {
  const g = await proxiedGateway(t, { proxyProtocol: { trusted: ['127.0.0.1'], timeout: 200 } })
  await assertRefused(g, Buffer.alloc(0), /sent nothing within proxyProtocol\.timeout/)
})

test('proxy-protocol: an untrusted peer that sends a header is cut, in either version', async (t) => {
  const g = await proxiedGateway(t, { proxyProtocol: { trusted: ['10.0.0.0/8'] } })
  await assertRefused(g, Buffer.concat([v1(), Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n')]), /not in proxyProtocol\.trusted/)
  g.events.errors.length = 0
  await assertRefused(g, v2Tcp4(), /not in proxyProtocol\.trusted/)
})

test('proxy-protocol: an untrusted peer\'s plain request passes with its own address', async (t) => {
  const { port, server } = await proxiedGateway(t, { proxyProtocol: { trusted: ['10.0.0.0/8'] } })
  assert.equal(await forwardedFor(port, Buffer.alloc(0)), '127.0.0.1')
  await assertNoConnections(server)
})

test('proxy-protocol: an untrusted peer that stays silent past the timeout is handed on, and its late request still passes', async (t) => {
  const { port } = await proxiedGateway(t, { proxyProtocol: { trusted: ['10.0.0.0/8'], timeout: 100 } })
  const socket = net.connect(port, '127.0.0.1')
  t.after(() => { socket.destroy() })
  let text = ''
  socket.on('data', (c: Buffer) => { text += c.toString() })
  await new Promise((resolve) => setTimeout(resolve, 300))
  socket.write('GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
  assert.equal(await closedWithin(socket), true, 'the gateway never answered and closed')
  assert.match(text, /^HTTP\/1\.1 200[\s\S]*"xff":"127\.0\.0\.1"/)
})

test('proxy-protocol: trustProxy is asked of the PROXY source: a trusted one keeps its X-Forwarded-For chain', async (t) => {
  const { port } = await proxiedGateway(t, { trustProxy: ['10.0.0.0/8'] })
  const fetchVia = async (source: string): Promise<{ xff: string, proto: string, real: string }> => {
    const socket = await connectWith(port, v1(source))
    return await new Promise((resolve, reject) => {
      http.get({ port, headers: { 'x-forwarded-for': '198.51.100.1' }, createConnection: () => socket }, (res) => {
        let body = ''
        res.on('data', (c: Buffer) => { body += c.toString() })
        res.on('end', () => resolve(JSON.parse(body) as { xff: string, proto: string, real: string }))
      }).on('error', reject)
    })
  }
  assert.deepEqual(await fetchVia('10.1.2.3'), { xff: '198.51.100.1, 10.1.2.3', proto: 'http', real: '198.51.100.1' })
  // The loopback peer itself is not in trustProxy: what counts is the address the header gave.
  assert.deepEqual(await fetchVia('203.0.113.7'), { xff: '203.0.113.7', proto: 'http', real: '203.0.113.7' })
})

test('proxy-protocol: ip-hash picks by the PROXY source, the same server for the same client', async (t) => {
  const nodes = await Promise.all(['a', 'b', 'c'].map(async (name) => (await httpUpstream(t, (_req, res) => res.end(name))).url))
  const { port } = await gatewayServer(t, { target: nodes, balance: 'ip-hash', proxyProtocol: { trusted: ['127.0.0.1'] } })
  const picked = new Map<string, string>()
  for (let i = 1; i <= 24; i++) {
    const source = `198.51.100.${i}`
    const first = await getThrough(port, v1(source))
    const again = await getThrough(port, v1(source))
    assert.equal(again.body, first.body, `${source} moved between servers`)
    picked.set(source, first.body)
  }
  // Every connection comes from 127.0.0.1: only the header's sources can spread them.
  assert.ok(new Set(picked.values()).size > 1, 'every source went to one server')
})

test('proxy-protocol: a WebSocket through the tunnel: the upstream and tunnel:open see the PROXY source', async (t) => {
  const upstream = http.createServer()
  const wss = new WebSocketServer({ server: upstream })
  wss.on('connection', (ws, req) => ws.send(String(req.headers['x-forwarded-for'])))
  t.after(() => { for (const c of wss.clients) c.terminate(); wss.close() })
  const upstreamPort = await listen(t, upstream)
  const { port, events, gateway } = await proxiedGateway(t, { target: `http://127.0.0.1:${upstreamPort}` })
  const socket = await connectWith(port, v2Tcp6())
  const ws = new WebSocket(`ws://127.0.0.1:${port}/chat`, { createConnection: () => socket })
  t.after(() => { ws.terminate() })
  const greeting = await new Promise<string>((resolve, reject) => {
    ws.once('message', (data) => resolve(String(data)))
    ws.once('error', reject)
  })
  assert.equal(greeting, '2001:db8::7')
  assert.equal(events.opened[0]?.clientAddress, '2001:db8::7')
  ws.close()
  assert.ok(await eventually(() => gateway.status().tunnels.open === 0))
})

test('proxy-protocol: on https the header comes before the TLS handshake, and the TLSSocket carries the source', async (t) => {
  const ca = fixture('ca.pem')
  const target = await whoUpstream(t)
  const gateway = createGateway({ target, proxyProtocol: { trusted: ['127.0.0.1'] } })
  t.after(() => gateway.close())
  let appSaw = ''
  const server = https.createServer({ key: fixture('key.pem'), cert: fixture('cert.pem') }, (req, res) => {
    appSaw = `${req.socket.remoteAddress}:${req.socket.remotePort}`
    gateway.handleRequest(req, res)
  })
  gateway.attach(server)
  const port = await listen(t, server)
  const raw = await connectWith(port, v1('203.0.113.9'))
  const body = await new Promise<string>((resolve, reject) => {
    https.get({
      host: '127.0.0.1',
      port,
      ca,
      createConnection: () => tls.connect({ socket: raw, ca, host: '127.0.0.1' }),
    }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => { text += c.toString() })
      res.on('end', () => resolve(text))
    }).on('error', reject)
  })
  assert.deepEqual(JSON.parse(body), { xff: '203.0.113.9', proto: 'https' })
  assert.equal(appSaw, '203.0.113.9:51000')
})

test('proxy-protocol: on an HTTP/2 server (attachHttp2) a request and a WebSocket stream both carry the PROXY source', async (t) => {
  const upstream = http.createServer((req, res) => res.end(String(req.headers['x-forwarded-for'])))
  const wss = new WebSocketServer({ server: upstream })
  wss.on('connection', (ws, req) => ws.send(String(req.headers['x-forwarded-for'])))
  t.after(() => { for (const c of wss.clients) c.terminate(); wss.close() })
  const upstreamPort = await listen(t, upstream)
  const gateway = createGateway({ target: `http://127.0.0.1:${upstreamPort}`, proxyProtocol: { trusted: ['127.0.0.1'] } })
  t.after(() => gateway.close())
  const server = http2.createSecureServer({ ...KEY_CERT, settings: { enableConnectProtocol: true } }, (req, res) => gateway.handleRequest(req, res))
  gateway.attachHttp2(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const raw = await connectWith(port, v2Tcp6())
  const session = http2.connect(`https://127.0.0.1:${port}`, { createConnection: () => tls.connect({ socket: raw, ca: CA, host: '127.0.0.1', ALPNProtocols: ['h2'] }) })
  session.on('error', () => {})
  t.after(() => new Promise<void>((resolve) => { session.destroy(); server.close(() => resolve()) }))
  const request = session.request({ ':path': '/plain' })
  request.on('error', () => {})
  assert.equal(await bodyOf(request), '2001:db8::7')
  const { stream, headers } = await extendedConnect(session, '/chat')
  assert.equal(headers[':status'], 200)
  const ws = frames(stream)
  assert.ok(await eventually(() => ws.messages.length > 0), 'no greeting through the tunnel')
  assert.equal(ws.messages[0], '2001:db8::7')
})

test('proxy-protocol: a log record for the first refused connection of a burst, an event for each', async (t) => {
  const records: Array<{ level: string, obj: Record<string, unknown> }> = []
  const logger: Logger = {
    info: (obj) => records.push({ level: 'info', obj: obj as Record<string, unknown> }),
    warn: (obj) => records.push({ level: 'warn', obj: obj as Record<string, unknown> }),
    error: (obj) => records.push({ level: 'error', obj: obj as Record<string, unknown> }),
    debug: () => {},
  }
  const g = await proxiedGateway(t, { logger })
  for (let i = 0; i < 3; i++) await rawExchange(g.port, Buffer.from('GET / HTTP/1.1\r\n\r\n'))
  assert.ok(await eventually(() => g.events.errors.length === 3))
  const refused = records.filter((r) => r.obj.code === 'SOCKGATE_ERR_PROXY_PROTOCOL')
  assert.equal(refused.length, 1)
  assert.equal(refused[0]?.obj.kind, 'connection')
})

test('proxy-protocol: two gateways on one server must agree on proxyProtocol', () => {
  const server = http.createServer()
  createGateway({ target: 'http://127.0.0.1:1', proxyProtocol: { trusted: ['10.0.0.0/8'] } }).attach(server)
  createGateway({ target: 'http://127.0.0.1:1', proxyProtocol: { trusted: [' 10.0.0.0/8'] } }).attach(server)
  createGateway({ target: 'http://127.0.0.1:1' }).attach(server)
  assert.throws(() => createGateway({ target: 'http://127.0.0.1:1', proxyProtocol: { trusted: ['127.0.0.1'] } }).attach(server),
    { code: 'SOCKGATE_ERR_INVALID_OPTION', message: /^proxyProtocol differs from that of another gateway/ })
})

test('proxy-protocol: closing the server gives its emit back', async (t) => {
  const server = http.createServer()
  createGateway({ target: 'http://127.0.0.1:1', proxyProtocol: { trusted: ['127.0.0.1'] } }).attach(server)
  assert.ok(Object.hasOwn(server, 'emit'))
  await listen(t, server)
  await new Promise<void>((resolve) => server.close(() => resolve()))
  assert.equal(Object.hasOwn(server, 'emit'), false)
})

// ---------------------------------------------------------------- the adapters

/** The address the framework itself reports for a request, and the X-Forwarded-For the upstream got, over a header with `source`. */
async function adapterSees (port: number, source: string): Promise<{ ip: string, xff: string }> {
  const ip = await getThrough(port, v1(source), '/ip')
  const proxied = await getThrough(port, v1(source), '/proxied')
  assert.equal(ip.status, 200, ip.body)
  return { ip: ip.body, xff: (JSON.parse(proxied.body) as { xff: string }).xff }
}

function adapterOptions (target: string): GatewayOptions {
  return { target, routes: [{ path: '/proxied', upstream: 'default' }], proxyProtocol: { trusted: ['127.0.0.1'] } }
}

test('proxy-protocol: express: req.ip and the upstream both see the PROXY source (proxy.attach before listen)', async (t) => {
  const app = express()
  app.get('/ip', (req, res) => { res.send(req.ip) })
  const proxy = expressProxy(adapterOptions(await whoUpstream(t)))
  app.use(proxy)
  const server = http.createServer(app)
  proxy.attach(server)
  t.after(() => proxy.gateway.close())
  const port = await listen(t, server)
  assert.deepEqual(await adapterSees(port, '203.0.113.21'), { ip: '203.0.113.21', xff: '203.0.113.21' })
})

test('proxy-protocol: koa: ctx.ip and the upstream both see the PROXY source (listen(app))', async (t) => {
  const app = new Koa()
  app.use(async (ctx, next) => {
    if (ctx.path === '/ip') ctx.body = ctx.ip
    else await next()
  })
  const proxy = koaProxy(adapterOptions(await whoUpstream(t)))
  app.use(proxy)
  t.after(() => proxy.gateway.close())
  const server = koaListen(app, 0, '127.0.0.1')
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  await new Promise((resolve) => server.once('listening', resolve))
  const { port } = server.address() as AddressInfo
  assert.deepEqual(await adapterSees(port, '203.0.113.22'), { ip: '203.0.113.22', xff: '203.0.113.22' })
})

test('proxy-protocol: fastify: request.ip and the upstream both see the PROXY source', async (t) => {
  const app = Fastify()
  app.get('/ip', async (request) => request.ip)
  await app.register(sockgatePlugin, adapterOptions(await whoUpstream(t)))
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => app.close())
  const { port } = app.server.address() as AddressInfo
  assert.deepEqual(await adapterSees(port, '203.0.113.23'), { ip: '203.0.113.23', xff: '203.0.113.23' })
})

test('proxy-protocol: express attached only on its first request refuses that connection with 500, naming the fix; later ones pass', async (t) => {
  const app = express()
  const proxy = expressProxy(adapterOptions(await whoUpstream(t)))
  app.use(proxy)
  const events = recordEvents(proxy.gateway)
  t.after(() => proxy.gateway.close())
  const warned = new Promise((resolve) => process.once('warning', resolve))
  const port = await listen(t, http.createServer(app))
  // No header: before attach, nothing reads one, and Node's parser would refuse it.
  const first = await getThrough(port, Buffer.alloc(0), '/proxied')
  assert.equal(first.status, 500)
  assert.equal(events.errors[0]?.error.code, 'SOCKGATE_ERR_PROXY_PROTOCOL')
  assert.match(events.errors[0]?.error.message ?? '', /attach before the server listens/i)
  await warned
  const later = await getThrough(port, v1('203.0.113.24'), '/proxied')
  assert.equal((JSON.parse(later.body) as { xff: string }).xff, '203.0.113.24')
})
