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
