import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import { Server as SocketIoServer, type ServerOptions } from 'socket.io'
import { createGateway, type Gateway, type GatewayOptions } from '../../src/index.js'

/** Listen on an ephemeral loopback port and close (all connections too) when the test ends. */
export async function listen<T extends http.Server | net.Server> (t: TestContext, server: T): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => {
    if ('closeAllConnections' in server) server.closeAllConnections()
    server.close(() => resolve())
  }))
  return (server.address() as AddressInfo).port
}

/** A plain HTTP upstream with the given handler. */
export async function httpUpstream (t: TestContext, handler: http.RequestListener): Promise<{ server: http.Server, url: string }> {
  const server = http.createServer(handler)
  const port = await listen(t, server)
  return { server, url: `http://127.0.0.1:${port}` }
}

/** A Socket.IO 4 upstream on its own HTTP server. */
export async function socketIoUpstream (t: TestContext, opts: Partial<ServerOptions> = {}): Promise<{ io: SocketIoServer, server: http.Server, url: string }> {
  const server = http.createServer()
  const io = new SocketIoServer(server, opts)
  t.after(() => { io.close() })
  const port = await listen(t, server)
  return { io, server, url: `http://127.0.0.1:${port}` }
}

/** A raw TCP upstream that sees exact bytes: `onConnection` decides what it answers. */
export async function rawUpstream (t: TestContext, onConnection: (socket: net.Socket) => void): Promise<{ server: net.Server, url: string, sockets: Set<net.Socket> }> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    onConnection(socket)
  })
  t.after(() => { for (const s of sockets) s.destroy() })
  const port = await listen(t, server)
  return { server, url: `http://127.0.0.1:${port}`, sockets }
}

/**
 * A raw upstream that reads one request head per connection and writes what
 * `answer` makes of it (nothing when it returns undefined); counts connections
 * and request heads.
 */
export async function answeringUpstream (t: TestContext, answer: (request: string, socket: net.Socket) => string | Buffer | undefined = () => undefined) {
  let connections = 0
  let requests = 0
  const upstream = await rawUpstream(t, (socket) => {
    connections++
    let request = ''
    socket.on('data', (chunk: Buffer) => {
      if (request.includes('\r\n\r\n')) return
      request += chunk.toString('latin1')
      if (!request.includes('\r\n\r\n')) return
      requests++
      const reply = answer(request, socket)
      if (reply !== undefined) socket.write(reply)
    })
  })
  return { ...upstream, connections: () => connections, requests: () => requests }
}

/** A gateway on a plain `http.createServer`, the way docs/getting-started.md shows it. */
export async function gatewayServer (t: TestContext, options: GatewayOptions): Promise<{ gateway: Gateway, server: http.Server, url: string, port: number }> {
  const gateway = createGateway(options)
  const server = http.createServer((req, res) => gateway.handleRequest(req, res))
  gateway.attach(server)
  t.after(() => gateway.close())
  const port = await listen(t, server)
  return { gateway, server, url: `http://127.0.0.1:${port}`, port }
}

/** Send raw bytes and collect everything until the server closes (or `ms` passes). */
export function rawExchange (port: number, bytes: string | Buffer, ms = 5_000): Promise<{ text: string, closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    const timer = setTimeout(() => { socket.destroy(); resolve({ text: Buffer.concat(chunks).toString('latin1'), closed: false }) }, ms)
    socket.on('data', (c) => chunks.push(c))
    socket.on('error', () => {})
    socket.on('close', () => { clearTimeout(timer); resolve({ text: Buffer.concat(chunks).toString('latin1'), closed: true }) })
    socket.write(bytes)
  })
}

/** Poll `predicate` until it holds or `ms` passes; returns whether it held. For eventual states, never for timing claims. */
export async function eventually (predicate: () => boolean, ms = 5_000): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (predicate()) return true
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return predicate()
}

/** A valid RFC 6455 upgrade request for `path`. */
export function upgradeRequest (path: string, extra: Record<string, string> = {}, host = 'localhost'): string {
  const headers: Record<string, string> = {
    Host: host,
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
    ...extra,
  }
  let text = `GET ${path} HTTP/1.1\r\n`
  for (const [k, v] of Object.entries(headers)) if (v !== '') text += `${k}: ${v}\r\n`
  return text + '\r\n'
}

// Helpers for the upgrade, tunnel, dispatch and Socket.IO tests (appended, so the imports sit here).
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after } from 'node:test'
import { WebSocket, WebSocketServer, type ClientOptions, type ServerOptions as WebSocketServerOptions } from 'ws'
import type { ProxyErrorEvent, TunnelCloseEvent, TunnelOpenEvent } from '../../src/index.js'

/** A `ws` echo server (binary stays binary) on its own HTTP server; `sockets` holds its raw TCP connections. */
export async function wsEchoUpstream (t: TestContext, opts: Omit<WebSocketServerOptions, 'server' | 'port' | 'noServer'> = {}): Promise<{ wss: WebSocketServer, server: http.Server, url: string, sockets: Set<net.Socket> }> {
  const server = http.createServer((_req, res) => { res.writeHead(426).end() })
  const sockets = new Set<net.Socket>()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  const wss = new WebSocketServer({ ...opts, server })
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
  })
  t.after(() => {
    for (const ws of wss.clients) ws.terminate()
    wss.close()
  })
  const port = await listen(t, server)
  return { wss, server, url: `http://127.0.0.1:${port}`, sockets }
}

/**
 * A `ws` client that is open (rejects if the handshake fails); terminated when the test ends.
 * A message the server sends on connection can arrive in the same packet as the 101 and be emitted
 * before this resolves: to read a greeting, add the 'message' listener before the handshake instead.
 */
export async function openWs (t: TestContext, url: string, protocols?: string | string[], opts: ClientOptions = {}): Promise<WebSocket> {
  const ws = new WebSocket(url.replace(/^http/, 'ws'), protocols, opts)
  t.after(() => { ws.terminate() })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
    ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)))
  })
  return ws
}

/** The next message `ws` receives, as a Buffer. */
export function nextMessage (ws: WebSocket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    ws.once('message', (data) => resolve(Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[])))
    ws.once('close', () => reject(new Error('closed before a message arrived')))
  })
}

/** Resolves once `ws` has closed (at once when it already has). */
export function wsClosed (ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve()
  return new Promise((resolve) => ws.once('close', () => resolve()))
}

/** One masked client-to-server WebSocket frame (RFC 6455 §5.2), FIN set; payloads under 64 KiB. */
export function maskedFrame (payload: string | Buffer, opcode = 0x1): Buffer {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload)
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78])
  const len = data.length < 126 ? Buffer.from([0x80 | data.length]) : Buffer.from([0x80 | 126, data.length >> 8, data.length & 0xff])
  const masked = Buffer.alloc(data.length)
  for (let i = 0; i < data.length; i++) masked[i] = data[i]! ^ mask[i % 4]!
  return Buffer.concat([Buffer.from([0x80 | opcode]), len, mask, masked])
}

/** Split a raw HTTP/1.1 answer into status, lower-cased headers and the bytes after the blank line. */
export function parseAnswer (text: string): { status: number, headers: Record<string, string>, body: string } {
  const end = text.indexOf('\r\n\r\n')
  const lines = (end === -1 ? text : text.slice(0, end)).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0), headers, body: end === -1 ? '' : text.slice(end + 4) }
}

/** Collects a gateway's `proxy:error`, `tunnel:open` and `tunnel:close` events. */
export function recordEvents (gateway: Gateway): { errors: ProxyErrorEvent[], opened: TunnelOpenEvent[], closed: TunnelCloseEvent[] } {
  const events = { errors: [] as ProxyErrorEvent[], opened: [] as TunnelOpenEvent[], closed: [] as TunnelCloseEvent[] }
  gateway.on('proxy:error', (e) => events.errors.push(e))
  gateway.on('tunnel:open', (e) => events.opened.push(e))
  gateway.on('tunnel:close', (e) => events.closed.push(e))
  return events
}

/** A gateway in front of `target` (the shorthand, with `options` beside it), with its events recorded. */
export async function gatewayTo (t: TestContext, target: string | string[], options: Partial<GatewayOptions> = {}) {
  const g = await gatewayServer(t, { target, ...options })
  return { ...g, events: recordEvents(g.gateway) }
}

/**
 * Watches for uncaught exceptions without handling them (`uncaughtExceptionMonitor`
 * never changes what the process does), and fails the file if one happened:
 * an error path that throws is a crash, never a swallowed error.
 */
export function watchForCrashes (): void {
  const crashes: Error[] = []
  process.on('uncaughtExceptionMonitor', (err) => { crashes.push(err) })
  after(() => { assert.deepEqual(crashes, [], 'an uncaught exception escaped sockgate') })
}

/** A raw TCP client of `port` that keeps what it receives; destroyed when the test ends. */
export async function rawClient (t: TestContext, port: number, opts: { allowHalfOpen?: boolean } = {}): Promise<{ socket: net.Socket, received: () => Buffer, text: () => string, closed: Promise<void>, isClosed: () => boolean }> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: opts.allowHalfOpen ?? false })
  t.after(() => { socket.destroy() })
  const chunks: Buffer[] = []
  let isClosed = false
  socket.on('data', (c) => chunks.push(c))
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => { isClosed = true; resolve() }))
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const received = (): Buffer => Buffer.concat(chunks)
  return { socket, received, text: () => received().toString('latin1'), closed, isClosed: () => isClosed }
}

/** Sec-WebSocket-Accept for `key` (RFC 6455 §4.2.2), computed here rather than by the code under test. */
export function acceptFor (key: string): string {
  return createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
}

/** A valid 101 answer to the raw upgrade request `request` (for raw upstreams). */
export function switchingProtocols (request: string): string {
  const key = /^sec-websocket-key:\s*(\S+)\s*$/im.exec(request)?.[1] ?? ''
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`
}

/**
 * A loopback URL that refuses connections: a server is opened on port 0 and
 * closed again at once. Nothing listens there afterwards, so connecting gets
 * ECONNREFUSED (this never re-listens on the port).
 */
export async function refusedUrl (): Promise<string> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return `http://127.0.0.1:${port}`
}

/** Whether `ws` has closed within `ms`: false rather than a hang when it never does, so a test can assert it. */
export function wsClosedWithin (ws: WebSocket, ms = 5_000): Promise<boolean> {
  return eventually(() => ws.readyState === WebSocket.CLOSED, ms)
}
