/**
 * The `--redis` demo's three chat nodes, each a process of its own
 * (demo/node-process.ts) joined by Redis. The primary owns them: the page's
 * Stop and Start reach them from any gateway worker through here, and
 * Ctrl+C shuts them down in order.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ChatNodes, DemoNode } from './nodes.js'
import type { NodeReply, NodeRequest } from './node-process.js'

const ENTRY = fileURLToPath(new URL('./node-process.ts', import.meta.url))

/** A chat node in another process, driven over IPC. */
class NodeProcess implements DemoNode {
  readonly name: string
  private readonly child: ChildProcess
  private readonly pending = new Map<number, (reply: NodeReply) => void>()
  private nextId = 0
  private state = { url: '', listening: false }

  constructor (name: string, redisUrl: string) {
    this.name = name
    this.child = fork(ENTRY, [], {
      env: { ...process.env, SOCKGATE_DEMO_NODE: name, SOCKGATE_DEMO_REDIS: redisUrl },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    this.child.on('message', (reply: NodeReply) => {
      this.state = { url: reply.url, listening: reply.listening }
      this.pending.get(reply.id)?.(reply)
      this.pending.delete(reply.id)
    })
    this.child.once('exit', (code, signal) => {
      this.state = { ...this.state, listening: false }
      const gone: NodeReply = { id: -1, ...this.state, error: `${name}'s process exited (${String(code ?? signal)})` }
      for (const settle of this.pending.values()) settle(gone)
      this.pending.clear()
    })
  }

  get url (): string { return this.state.url }
  get listening (): boolean { return this.state.listening }
  get pid (): number | undefined { return this.child.pid }

  start (): Promise<void> { return this.ask('start') }
  stop (): Promise<void> { return this.ask('stop') }

  /** A clean Socket.IO disconnect for every client (see `ChatNode.shutdown`), then the process exits. */
  async shutdown (): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = new Promise((resolve) => this.child.once('exit', resolve))
    await this.ask('shutdown')
    await exited
  }

  private ask (action: NodeRequest['action']): Promise<void> {
    if (!this.child.connected) return Promise.reject(new Error(`${this.name}'s process is gone`))
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, (reply) => (reply.error === undefined ? resolve() : reject(new Error(reply.error))))
      this.child.send({ id, action } satisfies NodeRequest)
    })
  }
}

/** Fork `count` node processes, `node-1` to `node-<count>`, joined by the Redis at `redisUrl`; resolves once all listen. */
export async function startNodeProcesses (count: number, redisUrl: string): Promise<ChatNodes & { pids: number[] }> {
  const nodes = Array.from({ length: count }, (_, i) => new NodeProcess(`node-${i + 1}`, redisUrl))
  await Promise.all(nodes.map((n) => n.start()))
  return {
    nodes,
    pids: nodes.map((n) => n.pid!),
    find: (name) => nodes.find((n) => n.name === name),
    close: () => Promise.all(nodes.map((n) => n.shutdown())).then(() => {}),
  }
}
