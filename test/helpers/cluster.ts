import http from 'node:http'
import type net from 'node:net'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import { Server as SocketIoServer } from 'socket.io'
import { io as ioClient } from 'socket.io-client'
import { WebSocketServer } from 'ws'

/**
 * An upstream node that can be killed (port closed, every connection cut)
 * and restarted on the port it got first, as a process restart would. It
 * serves Socket.IO (telling each client its `id` in a `node` event and
 * acking `echo`), a `ws` echo on `/ws`, and `GET /` → `node <id>`.
 */
export interface Node {
  readonly id: string
  readonly url: string
  readonly port: number
  /** True while listening. */
  readonly running: boolean
  /** Socket.IO connections accepted since the node was created. */
  readonly connections: number
  /** Engine.IO sessions open now. */
  readonly sessions: number
  kill (): Promise<void>
  start (): Promise<void>
  /** Stop accepting (connections are refused) while the connections it has run on. */
  pause (): void
  /** Accept again on the same port after `pause()`. */
  resume (): Promise<void>
  /** True while paused. */
  readonly paused: boolean
}

export async function startNode (t: TestContext, id: string): Promise<Node> {
  let server: http.Server | undefined
  let io: SocketIoServer | undefined
  let wss: WebSocketServer | undefined
  let sockets = new Set<net.Socket>()
  let port = 0
  let connections = 0

  const start = async (): Promise<void> => {
    const s = http.createServer((req, res) => {
      // Socket.IO answers its own path; everything else is a plain page naming the node.
      if (req.url?.startsWith('/socket.io/') === true) return
      res.writeHead(200, { 'content-type': 'text/plain' }).end(`node ${id}`)
    })
    const conns = new Set<net.Socket>()
    s.on('connection', (c) => {
      conns.add(c)
      c.on('close', () => conns.delete(c))
    })
    const sio = new SocketIoServer(s)
    sio.on('connection', (socket) => {
      connections++
      socket.emit('node', id)
      socket.on('echo', (msg: unknown, ack: (reply: unknown) => void) => ack(msg))
    })
    const w = new WebSocketServer({ noServer: true })
    w.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })))
    s.on('upgrade', (req, socket, head) => {
      if (req.url === '/ws') w.handleUpgrade(req, socket, head, (ws) => w.emit('connection', ws, req))
    })
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject)
      s.listen(port, '127.0.0.1', () => resolve())
    })
    port = (s.address() as AddressInfo).port
    server = s
    io = sio
    wss = w
    sockets = conns
  }

  const kill = async (): Promise<void> => {
    const s = server
    if (s === undefined) return
    server = undefined
    if (paused) {
      paused = false
      // Listening again only to close it the ordinary way.
      await new Promise<void>((resolve) => s.listen(port, '127.0.0.1', () => resolve()))
    }
    for (const ws of wss?.clients ?? []) ws.terminate()
    wss?.close()
    const closed = new Promise<void>((resolve) => s.close(() => resolve()))
    io?.close().catch(() => {})
    for (const c of sockets) c.destroy()
    await closed
  }

  let paused = false
  const pause = (): void => {
    if (server === undefined || paused) return
    paused = true
    // close() drops the listening socket at once; its callback would wait for the open connections.
    server.close()
  }
  const resume = async (): Promise<void> => {
    const s = server
    if (s === undefined || !paused) return
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject)
      s.listen(port, '127.0.0.1', () => resolve())
    })
    paused = false
  }

  await start()
  t.after(kill)
  return {
    id,
    get url () { return `http://127.0.0.1:${port}` },
    get port () { return port },
    get running () { return server !== undefined },
    get connections () { return connections },
    get sessions () { return io?.engine.clientsCount ?? 0 },
    get paused () { return paused },
    kill,
    start,
    pause,
    resume,
  }
}

/**
 * Connect a Socket.IO client (WebSocket only, no reconnection) through
 * `url` and resolve with the id of the node it reached; the client is
 * closed again. Rejects when the connection fails.
 */
export function landOn (url: string, timeout = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = ioClient(url, { transports: ['websocket'], reconnection: false, forceNew: true, timeout })
    socket.once('node', (id: string) => {
      socket.timeout(timeout).emit('echo', id, (err: Error | null, reply: string) => {
        socket.disconnect()
        if (err !== null) reject(err)
        else resolve(reply)
      })
    })
    socket.once('connect_error', (err) => {
      socket.disconnect()
      reject(err)
    })
  })
}

/** Resolve after `ms`. */
export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
