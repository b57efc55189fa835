/**
 * Helpers for the balancing and stickiness tests: clients bound to distinct
 * loopback source addresses (Linux routes all of 127.0.0.0/8 to `lo`), and
 * clusters of named upstream nodes that say which one answered.
 */
import http from 'node:http'
import type { TestContext } from 'node:test'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'
import { Server as SocketIoServer } from 'socket.io'
import { io as ioClient, type Socket as ClientSocket, type ManagerOptions, type SocketOptions } from 'socket.io-client'
import { listen } from './servers.js'

/** The `i`-th distinct loopback address, `127.20.0.1` onwards (never a .0 or .255 host part). */
export function loopbackAddress (i: number): string {
  const host = i % 250
  const rest = Math.floor(i / 250)
  return `127.${20 + Math.floor(rest / 250)}.${rest % 250}.${host + 1}`
}

/** A finished HTTP exchange as plain data. */
export interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

/** One request on a fresh connection from `localAddress` (default 127.0.0.1). */
export function request (port: number, path: string, opts: { localAddress?: string, method?: string, headers?: Record<string, string>, body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path,
      method: opts.method ?? 'GET',
      headers: { connection: 'close', ...opts.headers },
      localAddress: opts.localAddress ?? '127.0.0.1',
      agent: false,
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

/** Runs `fn` over `items` with at most `limit` in flight, results in order. */
export async function mapLimit<T, R> (items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i]!, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

/** A named upstream node: an HTTP server that answers every request with its name, and echoes WebSockets. */
export interface NamedNode {
  name: string
  url: string
  server: http.Server
  /** WebSocket connections open on this node now. */
  open: () => number
}

/** `n` nodes named `n0`, `n1`, ... (HTTP: the body is the name; WebSocket: the name is sent on open). */
export async function namedNodes (t: TestContext, n: number): Promise<NamedNode[]> {
  const nodes: NamedNode[] = []
  for (let i = 0; i < n; i++) {
    const name = `n${i}`
    const server = http.createServer((req, res) => {
      req.resume()
      req.on('end', () => res.end(name))
    })
    const wss = new WebSocketServer({ server })
    wss.on('connection', (ws) => {
      ws.send(name)
      ws.on('message', (data) => ws.send(data))
    })
    t.after(() => {
      for (const ws of wss.clients) ws.terminate()
      wss.close()
    })
    const port = await listen(t, server)
    nodes.push({ name, url: `http://127.0.0.1:${port}`, server, open: () => wss.clients.size })
  }
  return nodes
}

/** Counts per node name, every node present (0 when it got nothing). */
export function tally (names: readonly string[], nodes: readonly NamedNode[]): Map<string, number> {
  const counts = new Map(nodes.map((n) => [n.name, 0]))
  for (const name of names) counts.set(name, (counts.get(name) ?? 0) + 1)
  return counts
}

/** A Socket.IO node of a cluster; `unknownSid` counts engine.io's "Session ID unknown" refusals it gave. */
export interface SocketIoNode {
  name: string
  url: string
  io: SocketIoServer
  server: http.Server
  connections: () => number
  unknownSid: () => number
  /** Stop the node for good: every client connection is cut and the port closes. */
  kill: () => Promise<void>
}

/**
 * `n` Socket.IO nodes whose `ack` event answers `{ node, data }`. Each counts
 * its connections and its "Session ID unknown" errors (engine.io's
 * `connection_error` with code 1), the failure stickiness prevents.
 */
export async function socketIoCluster (t: TestContext, n: number): Promise<SocketIoNode[]> {
  const nodes: SocketIoNode[] = []
  for (let i = 0; i < n; i++) {
    const name = `n${i}`
    const server = http.createServer()
    const io = new SocketIoServer(server, { transports: ['polling', 'websocket'] })
    let connections = 0
    let unknown = 0
    io.on('connection', (socket) => {
      connections++
      socket.on('ack', (data: unknown, cb: unknown) => { if (typeof cb === 'function') cb({ node: name, data }) })
    })
    io.engine.on('connection_error', (err: { code: number }) => { if (err.code === 1) unknown++ })
    let killed = false
    const kill = async (): Promise<void> => {
      if (killed) return
      killed = true
      server.closeAllConnections()
      await new Promise<void>((resolve) => { io.close(() => resolve()).catch(() => resolve()) })
    }
    t.after(kill)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    nodes.push({ name, url: `http://127.0.0.1:${port}`, io, server, connections: () => connections, unknownSid: () => unknown, kill })
  }
  return nodes
}

/** A Socket.IO client of `url`, closed when the test ends. */
export function socketIoClient (t: TestContext, url: string, opts: Partial<ManagerOptions & SocketOptions> = {}): ClientSocket {
  const socket = ioClient(url, { forceNew: true, transports: ['polling'], ...opts })
  t.after(() => { socket.disconnect() })
  return socket
}

/** Resolves true once `socket` is connected, false on a connect error or after `ms`. */
export function connected (socket: ClientSocket, ms = 5_000): Promise<boolean> {
  if (socket.connected) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(false), ms)
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      socket.off('connect', onConnect)
      socket.off('connect_error', onError)
      resolve(ok)
    }
    const onConnect = (): void => done(true)
    const onError = (): void => done(false)
    socket.once('connect', onConnect)
    socket.once('connect_error', onError)
  })
}

/** Emits `ack` `count` times; resolves with the node names that acked (undefined for each emit that was never acked). */
export async function emitAcks (socket: ClientSocket, count: number, ms = 5_000): Promise<Array<string | undefined>> {
  const out: Array<string | undefined> = []
  for (let i = 0; i < count; i++) {
    try {
      const reply = await socket.timeout(ms).emitWithAck('ack', i) as { node: string, data: number }
      out.push(reply.data === i ? reply.node : undefined)
    } catch {
      out.push(undefined)
    }
  }
  return out
}
