/**
 * `npm start -- --redis`: the demo across processes. The primary starts a
 * throw-away redis-server on loopback, the three chat nodes as processes of
 * their own joined by `@socket.io/redis-adapter` (demo/node-processes.ts),
 * and the gateway app in two `sockgate/cluster` workers on one port. A chat
 * message then really crosses processes: browser → a worker → a node →
 * Redis → the other nodes → another worker → another browser.
 *
 * The page's buttons work from any worker: the worker asks the primary,
 * which owns the node processes (Stop, Start) and tells every worker's
 * gateway to drain or undrain (Drain), so all of them agree.
 */
import cluster, { type Worker } from 'node:cluster'
import type { Logger } from '../src/index.js'
import { startCluster } from '../src/cluster.js'
import type { DemoApp } from './apps.js'
import { DRAIN_TIMEOUT_MS, localActions, type Action, type Drainable, type NodeActions, type NodeState } from './controls.js'
import { startNodeProcesses } from './node-processes.js'
import { REDIS_INSTALL_HINT, redisServerFound, startRedis } from './redis.js'

/** Gateway worker processes. */
export const WORKERS = 2
/** How long open tunnels may run on after Ctrl+C (the nodes disconnect their clients meanwhile). */
const DRAIN_MS = 2_000
/** Hands the nodes' names and URLs to the workers, which node:cluster forks with the primary's environment. */
const NODES_ENV = 'SOCKGATE_DEMO_NODES'

/** The demo's own IPC messages between the primary and the workers (sockgate/cluster's carry `sockgate`). */
type ToPrimary =
  | { demo: 'act', id: number, name: string, action: Action }
  | { demo: 'drained', id: number }
  /** A worker is up (first start or restart after a crash) and wants the nodes' states and drains. */
  | { demo: 'hello' }
type ToWorker =
  | { demo: 'acted', id: number, error?: string }
  | { demo: 'states', states: NodeState[] }
  | { demo: 'drain', id: number, url: string, timeout: number }
  | { demo: 'undrain', url: string }

const isDemoMessage = <T>(msg: unknown): msg is T => typeof (msg as { demo?: unknown } | null)?.demo === 'string'

/** What the primary prints once every worker listens. */
export interface Started {
  url: string
  redisUrl: string
  redisPid: number
  workerPids: number[]
  nodes: Array<{ name: string, url: string, pid: number }>
  /** Shut the nodes down (a clean Socket.IO disconnect for every client). The cluster drains its workers on the same signal. */
  stopNodes: () => Promise<void>
}

/** How the app is built in each worker, given the nodes' names and URLs and the controls' actions. */
export type BuildApp = (servers: Array<{ name: string, url: string }>, actions: NodeActions, drainsTo: (pool: Drainable) => void) => Promise<DemoApp>

/**
 * Run the demo across processes. In the primary: resolves once every worker
 * listens (or exits the process with the install hint when redis-server is
 * missing). In a worker: builds and starts the app, and never resolves the
 * primary's part.
 */
export async function runAcrossProcesses (port: number, host: string, logger: Logger, build: BuildApp): Promise<Started | undefined> {
  const options = { workers: WORKERS, drain: DRAIN_MS, start: () => startWorker(port, host, build) }
  if (!cluster.isPrimary) {
    await startCluster(options)
    return undefined
  }
  if (!redisServerFound) {
    console.error(`--redis needs redis-server on this machine: ${REDIS_INSTALL_HINT}`)
    process.exit(1)
  }
  const redis = await startRedis()
  // However the primary ends (sockgate/cluster exits it once its workers have drained), Redis goes with it.
  process.once('exit', () => { try { process.kill(redis.pid, 'SIGTERM') } catch {} })
  const nodes = await startNodeProcesses(3, redis.url)
  serveWorkers(localActions(nodes, everyWorker(), logger))
  process.env[NODES_ENV] = JSON.stringify(nodes.nodes.map((n) => ({ name: n.name, url: n.url })))

  let address: { address: string, port: number } | undefined
  cluster.once('listening', (_worker, a) => { address = a })
  const box = await startCluster(options)
  if (!('pids' in box) || address === undefined) throw new Error('the gateway workers did not report their port')
  return {
    url: `http://${address.address}:${address.port}`,
    redisUrl: redis.url,
    redisPid: redis.pid,
    workerPids: box.pids,
    nodes: nodes.nodes.map((n, i) => ({ name: n.name, url: n.url, pid: nodes.pids[i]! })),
    stopNodes: () => nodes.close(),
  }
}

// ---------------------------------------------------------------------------------------------
// primary

function workers (): Worker[] {
  return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
}

function post (worker: Worker, msg: ToWorker): void {
  try {
    worker.send(msg)
  } catch {
    // The worker is going away; a restarted one gets the states when it comes online.
  }
}

/**
 * A drain for every worker's gateway at once: each drains its own pool, and
 * the drain is over when every worker has said so (or gone).
 */
function everyWorker (): Drainable {
  let nextId = 0
  const waiting = new Map<number, { left: Set<number>, done: () => void }>()
  const settle = (id: number, worker: number): void => {
    const drain = waiting.get(id)
    if (drain === undefined || !drain.left.delete(worker) || drain.left.size > 0) return
    waiting.delete(id)
    drain.done()
  }
  cluster.on('message', (worker, msg: unknown) => {
    if (isDemoMessage<ToPrimary>(msg) && msg.demo === 'drained') settle(msg.id, worker.id)
  })
  cluster.on('exit', (worker) => { for (const id of [...waiting.keys()]) settle(id, worker.id) })
  return {
    drain: (url, { timeout = DRAIN_TIMEOUT_MS }) => new Promise<void>((resolve) => {
      const id = nextId++
      const targets = workers()
      waiting.set(id, { left: new Set(targets.map((w) => w.id)), done: resolve })
      if (targets.length === 0) settle(id, -1)
      for (const w of targets) post(w, { demo: 'drain', id, url, timeout })
    }),
    undrain: (url) => { for (const w of workers()) post(w, { demo: 'undrain', url }) },
  }
}

/** Run the workers' requests for actions here, where the nodes are, and keep every worker's view of them current. */
function serveWorkers (actions: NodeActions): void {
  const broadcast = (): void => { for (const w of workers()) post(w, { demo: 'states', states: actions.states() }) }
  cluster.on('message', (worker, msg: unknown) => {
    if (!isDemoMessage<ToPrimary>(msg)) return
    if (msg.demo === 'hello') {
      // A worker restarted after a crash learns what changed since the primary started, and drains what is drained.
      const states = actions.states()
      post(worker, { demo: 'states', states })
      for (const node of states) if (node.drained) post(worker, { demo: 'drain', id: -1, url: node.url, timeout: DRAIN_TIMEOUT_MS })
    }
    if (msg.demo !== 'act') return
    // Every worker gets the new states first (the asking one included: IPC keeps each channel's order),
    // so the answer, and the next page load through either worker, show what the action did.
    const settle = (error?: string): void => {
      broadcast()
      post(worker, error === undefined ? { demo: 'acted', id: msg.id } : { demo: 'acted', id: msg.id, error })
    }
    actions.run(msg.name, msg.action).then(() => settle(), (err: unknown) => settle((err as Error).message))
  })
}

// ---------------------------------------------------------------------------------------------
// worker

/** The nodes as the primary last described them, and actions that the primary runs. */
function actionsInPrimary (initial: NodeState[]): NodeActions {
  let states = initial
  let nextId = 0
  const pending = new Map<number, (error?: string) => void>()
  process.on('message', (msg: unknown) => {
    if (!isDemoMessage<ToWorker>(msg)) return
    if (msg.demo === 'states') states = msg.states
    if (msg.demo === 'acted') {
      pending.get(msg.id)?.(msg.error)
      pending.delete(msg.id)
    }
  })
  return {
    states: () => states,
    run: (name, action) => new Promise((resolve, reject) => {
      const id = nextId++
      pending.set(id, (error) => (error === undefined ? resolve() : reject(new Error(error))))
      process.send!({ demo: 'act', id, name, action } satisfies ToPrimary)
    }),
  }
}

/** Apply the primary's drains to this worker's `pool`. */
function drainOnRequest (pool: Drainable): void {
  process.on('message', (msg: unknown) => {
    if (!isDemoMessage<ToWorker>(msg)) return
    if (msg.demo === 'undrain') pool.undrain(msg.url)
    if (msg.demo !== 'drain') return
    const done = (): void => { if (msg.id >= 0) process.send!({ demo: 'drained', id: msg.id } satisfies ToPrimary) }
    pool.drain(msg.url, { timeout: msg.timeout }).then(done, done)
  })
}

async function startWorker (port: number, host: string, build: BuildApp): Promise<{ gateway: DemoApp['gateway'], server: DemoApp['server'] }> {
  const servers = JSON.parse(process.env[NODES_ENV] ?? '[]') as Array<{ name: string, url: string }>
  const actions = actionsInPrimary(servers.map((s) => ({ ...s, listening: true, drained: false })))
  const app = await build(servers, actions, drainOnRequest)
  await app.listen(port, host)
  process.send!({ demo: 'hello' } satisfies ToPrimary)
  return { gateway: app.gateway, server: app.server }
}
