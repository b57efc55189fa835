/**
 * Three Socket.IO chat nodes for the demo, each on its own loopback port,
 * joined by a tiny in-process adapter so `io.emit()` on one node reaches the
 * clients of every node: what `@socket.io/redis-adapter` or
 * `@socket.io/cluster-adapter` do across processes, without the processes.
 * (With `--redis`, each node is a process of its own, demo/node-process.ts,
 * and the Redis adapter joins them.)
 *
 * A node can be stopped (as if its process died) and started again on the
 * same port, so the page can show what the gateway does when a node goes away.
 */
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { Server, type ServerOptions } from 'socket.io'
import { Adapter, type BroadcastOptions } from 'socket.io-adapter'

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

/** How long a clean shutdown waits for clients to collect their disconnect (polling ones need one more poll). */
const DISCONNECT_WAIT_MS = 2_000
const HOST = '127.0.0.1'

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

  // io.close() calls this, so a stopped node leaves the bus and its restarted self joins it anew.
  override close (): void {
    this.bus.delete(this)
  }

  private deliver (packet: Packet, opts: BroadcastOptions): void {
    super.broadcast(packet, opts)
  }
}

/** What exists while a node runs: its servers and what is connected to them. */
interface Running {
  io: Server
  server: http.Server
  /** Every TCP connection, upgraded ones included, so stopping can cut them all. */
  sockets: Set<Socket>
  /** Open engine.io connections, so a clean shutdown can wait for clients to take their disconnect. */
  connections: Set<EngineSocket>
}

/** One chat node: a Socket.IO server on a fixed loopback port that can be stopped and started again. */
export class ChatNode implements DemoNode {
  readonly name: string
  /** What joins this node's broadcasts to the other nodes'. */
  private readonly adapter: ServerOptions['adapter']
  /** Makes the node's engine.io session ids, when not engine.io's own. */
  private readonly generateId: (() => string) | undefined
  /** 0 until the first start picks a free port; every later start listens on the same one. */
  private port = 0
  private running: Running | null = null
  /** Start, stop and shutdown run one after the other, so two quick clicks cannot interleave. */
  private queue: Promise<void> = Promise.resolve()

  constructor (name: string, adapter: ServerOptions['adapter'], generateId?: () => string) {
    this.name = name
    this.adapter = adapter
    this.generateId = generateId
  }

  /** `http://127.0.0.1:<port>`, the same before and after a restart. */
  get url (): string {
    return `http://${HOST}:${this.port}`
  }

  /** Listening and taking connections. */
  get listening (): boolean {
    return this.running !== null
  }

  /** Listen (again, on the same port); nothing happens when it already runs. */
  start (): Promise<void> {
    return this.serially(async () => {
      if (this.running === null) this.running = await this.listen()
    })
  }

  /**
   * Stop as if the process died: the Socket.IO and HTTP servers close and
   * every connection is cut, so clients see their transport close and
   * reconnect (through the gateway, to another node).
   */
  stop (): Promise<void> {
    return this.serially(() => this.close(false))
  }

  /**
   * Stop cleanly (Ctrl+C): every client first gets a Socket.IO disconnect,
   * which tells it not to reconnect, and polling clients get a moment to
   * collect theirs with their next poll.
   */
  shutdown (): Promise<void> {
    return this.serially(() => this.close(true))
  }

  private serially (step: () => Promise<void>): Promise<void> {
    const next = this.queue.then(step)
    this.queue = next.catch(() => {})
    return next
  }

  private async listen (): Promise<Running> {
    const server = http.createServer()
    const sockets = new Set<Socket>()
    server.on('connection', (socket: Socket) => {
      sockets.add(socket)
      socket.once('close', () => sockets.delete(socket))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, HOST, () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.port = (server.address() as AddressInfo).port
    // serveClient (the default) makes every node answer /socket.io/socket.io.js; the page loads it through sockgate.
    const io = new Server(server, { adapter: this.adapter })
    if (this.generateId !== undefined) io.engine.generateId = this.generateId
    const connections = new Set<EngineSocket>()
    io.engine.on('connection', (conn: EngineSocket) => {
      connections.add(conn)
      conn.once('close', () => connections.delete(conn))
    })
    io.on('connection', (socket) => {
      socket.emit('hello', { node: this.name })
      socket.on('chat', (msg: unknown) => {
        const message = chatMessage(msg, this.name)
        if (message !== undefined) io.emit('chat', message)
      })
    })
    return { io, server, sockets, connections }
  }

  private async close (farewell: boolean): Promise<void> {
    const running = this.running
    if (running === null) return
    this.running = null
    if (farewell) {
      running.io.disconnectSockets(true)
      await connectionsClosed(running.connections, DISCONNECT_WAIT_MS)
    }
    const closed = running.io.close()
    for (const socket of running.sockets) socket.destroy()
    await closed
  }
}

/** The message to broadcast for what a client sent, or undefined when it is not a chat message. */
function chatMessage (msg: unknown, node: string): ChatMessage | undefined {
  if (typeof msg !== 'object' || msg === null) return undefined
  const { from, text } = msg as Record<string, unknown>
  if (typeof text !== 'string' || text.trim() === '') return undefined
  return {
    from: typeof from === 'string' && from !== '' ? from.slice(0, 40) : 'anonymous',
    text: text.slice(0, 500),
    node,
    at: Date.now(),
  }
}

/** Resolves once every one of `connections` has closed, or after `ms`. */
function connectionsClosed (connections: Set<EngineSocket>, ms: number): Promise<void> {
  const open = [...connections]
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

/** A chat node as the controls use it, in this process (`ChatNode`) or in its own. */
export interface DemoNode {
  readonly name: string
  readonly url: string
  readonly listening: boolean
  start: () => Promise<void>
  stop: () => Promise<void>
  shutdown: () => Promise<void>
}

/** The running nodes and how to shut them all down. */
export interface ChatNodes {
  nodes: DemoNode[]
  /** The node named `name`, if there is one. */
  find: (name: string) => DemoNode | undefined
  /** Shut every node down cleanly (see `ChatNode.shutdown`). */
  close: () => Promise<void>
}

/** Start `count` nodes, `node-1` to `node-<count>`, on 127.0.0.1 (ports picked by the OS), sharing broadcasts. */
export async function startNodes (count = 3): Promise<ChatNodes> {
  const adapter = busAdapter(new Set<BusAdapter>())
  const nodes: ChatNode[] = []
  for (let i = 1; i <= count; i++) {
    const node = new ChatNode(`node-${i}`, adapter)
    await node.start()
    nodes.push(node)
  }
  return {
    nodes,
    find: (name) => nodes.find((n) => n.name === name),
    close: () => Promise.all(nodes.map((n) => n.shutdown())).then(() => {}),
  }
}
