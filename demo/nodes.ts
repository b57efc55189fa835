/**
 * Three Socket.IO chat nodes for the demo, each on its own loopback port,
 * joined by a tiny in-process adapter so `io.emit()` on one node reaches the
 * clients of every node: what `@socket.io/redis-adapter` or
 * `@socket.io/cluster-adapter` do across processes, without the processes.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Server } from 'socket.io'
import { Adapter, type BroadcastOptions } from 'socket.io-adapter'

/** One running node. */
export interface ChatNode {
  name: string
  url: string
  io: Server
  server: http.Server
  /** Open engine.io connections, so stopping can wait for clients to take their disconnect. */
  connections: Set<EngineSocket>
}

/** The running nodes and how to stop them. */
export interface ChatNodes {
  nodes: ChatNode[]
  close: () => Promise<void>
}

/** A chat message as the nodes send it to every client. */
export interface ChatMessage {
  from: string
  text: string
  /** The node the sender is connected to. */
  node: string
  at: number
}

type Packet = Parameters<Adapter['broadcast']>[0]
/** The part of an engine.io connection the demo uses. */
interface EngineSocket { once: (event: 'close', listener: () => void) => unknown }

/** How long stopping waits for clients to collect their disconnect (polling ones need one more poll). */
const DISCONNECT_WAIT_MS = 2_000

/**
 * An adapter class whose instances share `bus`: a broadcast is delivered
 * locally, then handed to every peer adapter of the same namespace, which
 * delivers it to its own clients only (so nothing loops).
 */
function busAdapter (bus: Set<BusAdapter>): typeof Adapter {
  return class extends BusAdapter {
    constructor (nsp: unknown) {
      super(nsp, bus)
    }
  }
}

class BusAdapter extends Adapter {
  private readonly bus: Set<BusAdapter>

  constructor (nsp: unknown, bus: Set<BusAdapter>) {
    super(nsp)
    this.bus = bus
    bus.add(this)
  }

  override broadcast (packet: Packet, opts: BroadcastOptions): void {
    super.broadcast(packet, opts)
    if (opts.flags?.local === true) return
    for (const peer of this.bus) {
      if (peer !== this && peer.nsp.name === this.nsp.name) peer.deliver(packet, opts)
    }
  }

  override serverCount (): Promise<number> {
    return Promise.resolve(this.bus.size)
  }

  override close (): void {
    this.bus.delete(this)
  }

  private deliver (packet: Packet, opts: BroadcastOptions): void {
    super.broadcast(packet, opts)
  }
}

async function startNode (name: string, bus: Set<BusAdapter>): Promise<ChatNode> {
  const server = http.createServer()
  // serveClient (the default) makes every node answer /socket.io/socket.io.js; the page loads it through sockgate.
  const io = new Server(server, { adapter: busAdapter(bus) })
  const connections = new Set<EngineSocket>()
  io.engine.on('connection', (conn: EngineSocket) => {
    connections.add(conn)
    conn.once('close', () => connections.delete(conn))
  })
  io.on('connection', (socket) => {
    socket.emit('hello', { node: name })
    socket.on('chat', (msg: unknown) => {
      if (typeof msg !== 'object' || msg === null) return
      const { from, text } = msg as Record<string, unknown>
      if (typeof text !== 'string' || text.trim() === '') return
      const message: ChatMessage = {
        from: typeof from === 'string' && from !== '' ? from.slice(0, 40) : 'anonymous',
        text: text.slice(0, 500),
        node: name,
        at: Date.now(),
      }
      io.emit('chat', message)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return { name, url: `http://127.0.0.1:${port}`, io, server, connections }
}

/** Resolves once every engine.io connection of `node` has closed, or after `ms`. */
function connectionsClosed (node: ChatNode, ms: number): Promise<void> {
  const open = [...node.connections]
  if (open.length === 0) return Promise.resolve()
  return new Promise((resolve) => {
    let left = open.length
    const timer = setTimeout(resolve, ms)
    for (const conn of open) {
      conn.once('close', () => {
        if (--left > 0) return
        clearTimeout(timer)
        resolve()
      })
    }
  })
}

/**
 * Stop a node: every client gets a Socket.IO disconnect (so it does not
 * reconnect), polling clients collect theirs with their next poll, then
 * io.close() closes the HTTP server and closeAllConnections() ends the
 * gateway's idle keep-alive connections to it.
 */
async function stopNode (node: ChatNode): Promise<void> {
  node.io.disconnectSockets(true)
  await connectionsClosed(node, DISCONNECT_WAIT_MS)
  await new Promise<void>((resolve, reject) => {
    node.io.close((err) => (err === undefined ? resolve() : reject(err))).catch(reject)
    node.server.closeAllConnections()
  })
}

/** Start `count` nodes on 127.0.0.1, port 0, sharing broadcasts. */
export async function startNodes (count = 3): Promise<ChatNodes> {
  const bus = new Set<BusAdapter>()
  const nodes: ChatNode[] = []
  for (let i = 1; i <= count; i++) nodes.push(await startNode(`node-${i}`, bus))
  return { nodes, close: () => Promise.all(nodes.map(stopNode)).then(() => {}) }
}
