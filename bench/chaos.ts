/**
 * Chaos run (issue 9): Socket.IO clients and plain HTTP load through one
 * gateway for a bounded time, while its upstream nodes are killed with
 * SIGKILL and restarted on the same port, one after the other, all the time.
 * Not part of `npm test`.
 *
 *   npm run chaos                          60 s of load, 60 clients
 *   npm run chaos -- --seconds=30 --clients=30 --json
 *
 * Processes, so that a crash, a leaked socket or grown memory of the gateway
 * can be seen from outside it:
 * - the gateway (bench/chaos/gateway.ts): createGateway() with default pool
 *   options in front of the three nodes, short health checks, status page;
 * - three upstream nodes, each its own bench/upstreams.ts child (Socket.IO
 *   `ack` event, `GET /small`), on ports picked free below the ephemeral
 *   range so that no outgoing connection takes one while its node is dead;
 * - the clients and HTTP loops (bench/chaos/load.ts) and the kill loop run here.
 *
 * Figures that must be 0 (or back to baseline) make the exit code 1.
 * Everything listens on 127.0.0.1, every loop stops by itself, and only the
 * children started here are stopped, by their own PID. Linux only (/proc).
 */
import { readFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { startNodeChild, type NodeChild } from './children.js'
import { readProcStats } from './measure.js'
import { countFds, describeClientConnections, MIB, measure, sampleFds, statusOf, type FdCount, type GatewayFigures, type GatewayReport } from './chaos/figures.js'
import { ACK_DEADLINE_MS, ChaosClient, HTTP_LOOPS, runHttpLoad, type HttpTally, type SioTally, type Transport } from './chaos/load.js'
import { TrackingAgent } from './workloads/socketio.js'
import { sleep, waitUntil } from './workloads/wait.js'

const NODES = 3
/** Node's own default: the gateway's idle pooled connections are closed by the upstream within the settle time. */
const UPSTREAM_KEEP_ALIVE_MS = 5_000
/** How long a killed node stays dead, and how long it runs before the next node is killed. */
const DEAD_MS = 1_500
const ALIVE_MS = 2_000
const CONNECT_ALL_MS = 30_000
const SETTLE_MIN_MS = 1_000
const SETTLE_MAX_MS = 20_000
/** fds: one health-check connection per node may be open when a sample is taken. */
const FD_TOLERANCE = NODES
/**
 * Memory, after a full collection. RSS does not fall back to the idle figure: V8 keeps the code it
 * compiled and the heap pages it grew, and malloc keeps the arenas of the busiest moment (+20 to
 * +35 MiB here, after 30 s or 60 s alike, more when the machine is busy and connections pile up).
 * What a leak holds is live JS memory (objects, and Buffers in external), so that gets the tight bound.
 */
const RSS_TOLERANCE_MIB = 64
const JS_TOLERANCE_MIB = 8

// ---------------------------------------------------------------- options

interface ChaosOptions { seconds: number, clients: number, json: boolean, spare: boolean }

const USAGE = `usage: npm run chaos -- [options]
  --seconds=N   seconds of load while nodes are killed and restarted (default 60)
  --clients=N   Socket.IO clients: a third default transports, a third polling, a third websocket (default 60)
  --spare       never kill the first node, so that the clients on it stay connected the whole run
  --json        print the figures as JSON instead of a table
  --help`

function parseOptions (argv: string[]): ChaosOptions | undefined {
  const options: ChaosOptions = { seconds: 60, clients: 60, json: false, spare: false }
  for (const arg of argv) {
    if (arg === '--help' || arg === '-h') return undefined
    if (arg === '--json' || arg === '--spare') { options[arg.slice(2) as 'json' | 'spare'] = true; continue }
    const [, name, value = ''] = /^--(seconds|clients)=(.*)$/.exec(arg) ?? []
    const n = Number(value)
    if (name === undefined) throw new Error(`unknown option ${arg}\n${USAGE}`)
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got '${value}'`)
    options[name as 'seconds' | 'clients'] = n
  }
  return options
}

// ---------------------------------------------------------------- upstream nodes

const UPSTREAM_ENTRY = fileURLToPath(new URL('./upstreams.ts', import.meta.url))
const GATEWAY_ENTRY = fileURLToPath(new URL('./chaos/gateway.ts', import.meta.url))

/** Free ports on 127.0.0.1 below the ephemeral range (outgoing connections never take those). */
async function pickPorts (count: number): Promise<number[]> {
  const ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768
  const ports: number[] = []
  for (let attempt = 0; ports.length < count && attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * Math.max(1_000, ephemeralLow - 20_000))
    const free = await new Promise<boolean>((resolve) => {
      const probe = net.createServer()
      probe.once('error', () => resolve(false))
      probe.listen({ host: '127.0.0.1', port }, () => probe.close(() => resolve(true)))
    })
    if (free && !ports.includes(port)) ports.push(port)
  }
  if (ports.length < count) throw new Error('no free ports found below the ephemeral range')
  return ports
}

/** One upstream node: a child that can be killed and started again on the same port. */
class UpstreamNode {
  child: NodeChild | undefined
  constructor (readonly port: number) {}

  async start (): Promise<void> {
    let reason = ''
    // The port can be busy for a moment (another program probing); try again a few times.
    for (let attempt = 0; attempt < 10; attempt++) {
      const started = await startNodeChild(UPSTREAM_ENTRY, [String(this.port), String(UPSTREAM_KEEP_ALIVE_MS)])
      if (started.ok) {
        this.child = started.child
        return
      }
      reason = started.reason
      await sleep(200)
    }
    throw new Error(`upstream on port ${this.port} did not start: ${reason}`)
  }

  async kill (): Promise<void> {
    const child = this.child
    if (child?.pid === undefined || !child.alive) return
    try { process.kill(child.pid, 'SIGKILL') } catch { return } // it had just exited
    await waitUntil(() => !child.alive, 2_000)
  }
}

interface KillTally { kills: number, restartFailures: number }

/** Kills a node, waits, starts it again, and moves on to the next, until `stopped()`. */
async function killLoop (nodes: UpstreamNode[], stopped: () => boolean, tally: KillTally, note: (event: string) => void): Promise<void> {
  for (let i = 0; !stopped(); i = (i + 1) % nodes.length) {
    const node = nodes[i]!
    note(`kill node ${node.port}`)
    await node.kill()
    tally.kills++
    await sleep(DEAD_MS)
    // Restarted even when the run is over, so the clients leave a whole pool.
    await node.start().then(() => note(`node ${node.port} listening again`), () => {
      tally.restartFailures++
      note(`node ${node.port} did not restart`)
    })
    await waitUntil(stopped, ALIVE_MS)
  }
}
// ---------------------------------------------------------------- the run

export interface ChaosResult {
  startedAt: string
  machine: { node: string, cpus: number, cpuModel: string | undefined }
  options: ChaosOptions
  kills: number
  restartFailures: number
  gateway: { crashes: number, exitedUnexpectedly: boolean, uncaught: number, errorCodes: Record<string, number>, stderr: string, peakFds: number, peakRssMiB: number }
  /** Before any client, every node up and checked. */
  baseline: GatewayFigures
  /**
   * After the clients left and the gateway settled; null when the gateway had exited. `clientConnections`
   * tells the client connections still open by the TCP state of both ends.
   */
  after: (GatewayFigures & { tunnelsOpen: number, settleSeconds: number, clientConnections: Record<string, number> }) | null
  tolerances: { fds: number, rssMiB: number, jsMiB: number }
  socketio: SioTally & {
    clients: number
    stayedConnected: number
    lostByStayedConnected: number
    disconnectedClients: number
    reconnectedClients: number
  }
  http: HttpTally
  /** Kills and restarts, in seconds since the clients were started. */
  timeline: string[]
  /** The first few clients that lost acks, with what happened to them (same clock as `timeline`). */
  clientsThatLostAcks: { id: number, transport: Transport, lost: number, history: string[] }[]
  /** Must-be-0 figures that were not. */
  failures: string[]
}

const children = new Set<NodeChild>()
const nodes: UpstreamNode[] = []
let cleanup: (() => void) | undefined

async function stopEverything (): Promise<void> {
  cleanup?.()
  const all = [...children, ...nodes.map((n) => n.child)].filter((c): c is NodeChild => c !== undefined)
  await Promise.allSettled(all.map((c) => c.stop()))
}

function progress (text: string): void { process.stderr.write(`${text}\n`) }

async function chaos (options: ChaosOptions): Promise<ChaosResult> {
  const startedAt = new Date().toISOString()
  for (const port of await pickPorts(NODES)) nodes.push(new UpstreamNode(port))
  await Promise.all(nodes.map((n) => n.start()))
  const upstreamPorts = nodes.map((n) => n.port)
  const started = await startNodeChild(GATEWAY_ENTRY, upstreamPorts.map(String))
  if (!started.ok) throw new Error(`gateway did not start: ${started.reason}`)
  const gateway = started.child
  const port = started.port
  const pid = gateway.pid!
  children.add(gateway)
  const allUp = async (): Promise<boolean> => Object.values((await statusOf(port)).pools).every((p) => p.servers.every((s) => s.state === 'up'))
  for (let i = 0; !await allUp(); i++) {
    if (i === 50) throw new Error('the gateway\'s health checks did not see every node up within 10 s')
    await sleep(200)
  }

  // Baseline: nodes up and checked, no client yet.
  const { figures: baseline } = await measure(gateway, port, await sampleFds(pid, port, upstreamPorts))
  progress(`chaos: gateway pid ${pid} on 127.0.0.1:${port}, nodes on ${upstreamPorts.join(', ')}; baseline ${baseline.fds.total} fds, ${baseline.rssMiB.toFixed(1)} MiB`)

  const sio: SioTally = { emits: 0, acked: 0, mismatched: 0, lost: 0, cut: 0, late: 0, maxAckMs: 0, disconnects: 0, reasons: {}, reconnects: 0 }
  const http: HttpTally = { requests: 0, statuses: {}, errors: {} }
  // No keep-alive for polling: xmlhttprequest-ssl 2.1.2 (engine.io-client's XHR in Node) answers an
  // ECONNRESET on a reused socket by opening a new request that it never sends, so that poll or
  // emit hangs until the client's ping timeout. Its default (no agent) is one connection per request too.
  const agent = new TrackingAgent({ keepAlive: false })
  const transports: Transport[] = ['default', 'polling', 'websocket']
  const epoch = Date.now()
  const timeline: string[] = []
  const note = (event: string): void => { timeline.push(`+${((Date.now() - epoch) / 1000).toFixed(1)} s ${event}`) }
  const clients = Array.from({ length: options.clients }, (_, i) => new ChaosClient(port, i, transports[i % 3]!, agent, sio, epoch))
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: HTTP_LOOPS, headersTimeout: 10_000, bodyTimeout: 10_000 })
  let over = false
  cleanup = () => {
    over = true
    clients.forEach((c) => c.leave())
    agent.destroyAll()
    pool.destroy().catch(() => {})
  }
  await waitUntil(() => clients.every((c) => c.socket.connected), CONNECT_ALL_MS)
  const unconnected = clients.filter((c) => !c.socket.connected).length
  if (unconnected > 0) throw new Error(`${unconnected} of ${clients.length} clients did not connect within ${CONNECT_ALL_MS} ms`)

  const tally = { kills: 0, restartFailures: 0 }
  let peakFds = baseline.fds.total
  const deadline = Date.now() + options.seconds * 1000
  const stopped = (): boolean => over || !gateway.alive || Date.now() >= deadline
  clients.forEach((c) => c.startEmitting())
  const load = runHttpLoad(pool, stopped, http)
  const kills = killLoop(options.spare ? nodes.slice(1) : nodes, stopped, tally, note)
  for (let second = 1; !stopped(); second++) {
    await sleep(1_000)
    if (!gateway.alive) break
    clients.forEach((c) => c.sweep())
    peakFds = Math.max(peakFds, countFds(pid, port, upstreamPorts).total)
    if (second % 10 === 0) {
      const connected = clients.filter((c) => c.socket.connected).length
      progress(`chaos: ${second} s, ${tally.kills} kills, ${connected}/${clients.length} connected, ${sio.acked} acks, ${http.requests} HTTP requests`)
    }
  }
  await kills
  await load

  // The clients stop emitting, wait for their acks, then leave.
  clients.forEach((c) => c.stopEmitting())
  await waitUntil(() => clients.every((c) => c.pending === 0), ACK_DEADLINE_MS + 500)
  clients.forEach((c) => c.sweep())
  const stayed = clients.filter((c) => c.disconnects === 0)
  clients.forEach((c) => c.leave())
  // An engine that still had a write in flight sends its close packet when that write ends, on a
  // connection it may open then: wait for every engine to close, then cut connections until none is left.
  await waitUntil(() => clients.every((c) => c.closed), 5_000)
  for (let i = 0; i < 20 && (i < 3 || agent.size > 0); i++) {
    agent.destroyAll()
    await sleep(100)
  }
  await pool.close()

  // Settle: wait until the client connections and tunnels are gone and the fds are back, or SETTLE_MAX_MS.
  let after: ChaosResult['after'] = null
  let report: GatewayReport = { uncaught: 0, errorCodes: {}, jsBytes: NaN }
  let peakRssMiB = NaN
  const exitedUnexpectedly = !gateway.alive
  if (!exitedUnexpectedly) {
    const leftAt = Date.now()
    await sleep(SETTLE_MIN_MS)
    let fds: FdCount
    let tunnelsOpen: number
    for (;;) {
      fds = await sampleFds(pid, port, upstreamPorts)
      tunnelsOpen = (await statusOf(port)).tunnels.open
      const settled = tunnelsOpen === 0 && fds.clients === 0 && fds.total <= baseline.fds.total + FD_TOLERANCE
      if (settled || Date.now() - leftAt >= SETTLE_MAX_MS) break
      await sleep(500)
    }
    const settleSeconds = (Date.now() - leftAt) / 1000
    peakRssMiB = readProcStats([pid]).maxRss / MIB
    const measured = await measure(gateway, port, fds)
    report = measured.report
    after = { ...measured.figures, tunnelsOpen, settleSeconds, clientConnections: describeClientConnections(pid, port) }
  }

  const lostByStayed = stayed.reduce((n, c) => n + c.lost, 0)
  const crashes = (exitedUnexpectedly ? 1 : 0) + report.uncaught
  const failures: string[] = []
  if (crashes > 0) failures.push(`gateway crashes: ${crashes}${exitedUnexpectedly ? ' (it exited during the run)' : ''}`)
  if (after !== null) {
    if (after.fds.clients > 0 || after.fds.total > baseline.fds.total + FD_TOLERANCE) failures.push(`fds not back to baseline: ${after.fds.total} (baseline ${baseline.fds.total}, ${after.fds.clients} client connections)`)
    if (after.rssMiB > baseline.rssMiB + RSS_TOLERANCE_MIB) failures.push(`RSS not back to baseline: ${after.rssMiB.toFixed(1)} MiB (baseline ${baseline.rssMiB.toFixed(1)})`)
    if (after.jsMiB > baseline.jsMiB + JS_TOLERANCE_MIB) failures.push(`JS memory not back to baseline: ${after.jsMiB.toFixed(1)} MiB (baseline ${baseline.jsMiB.toFixed(1)})`)
    if (after.tunnelsOpen !== 0) failures.push(`tunnels still open: ${after.tunnelsOpen}`)
  }
  if (lostByStayed > 0) failures.push(`lost acks of clients that stayed connected: ${lostByStayed}`)
  if (sio.lost > 0) failures.push(`lost acks on connections that stayed up: ${sio.lost}`)
  if (sio.mismatched > 0) failures.push(`acks with the wrong payload: ${sio.mismatched}`)
  if (tally.restartFailures > 0) failures.push(`node restarts that failed: ${tally.restartFailures}`)

  return {
    startedAt,
    machine: { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model },
    options,
    kills: tally.kills,
    restartFailures: tally.restartFailures,
    gateway: { crashes, exitedUnexpectedly, uncaught: report.uncaught, errorCodes: report.errorCodes, stderr: gateway.tail.trim(), peakFds, peakRssMiB },
    baseline,
    after,
    tolerances: { fds: FD_TOLERANCE, rssMiB: RSS_TOLERANCE_MIB, jsMiB: JS_TOLERANCE_MIB },
    socketio: {
      ...sio,
      clients: clients.length,
      stayedConnected: stayed.length,
      lostByStayedConnected: lostByStayed,
      disconnectedClients: clients.length - stayed.length,
      reconnectedClients: clients.filter((c) => c.connects > 1).length,
    },
    http,
    timeline,
    clientsThatLostAcks: clients.filter((c) => c.lost > 0).slice(0, 5).map((c) => ({ id: c.id, transport: c.transport, lost: c.lost, history: c.history })),
    failures,
  }
}

// ---------------------------------------------------------------- report

function formatResult (r: ChaosResult): string {
  const mib = (n: number): string => `${n.toFixed(1)} MiB`
  const counts = (o: Record<string, number>): string => Object.entries(o).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'
  const s = r.socketio
  const b = r.baseline
  const a = r.after
  const gone = 'n/a (the gateway exited)'
  const t = r.tolerances
  const rows: [string, string, string][] = [
    ['gateway crashes (exit or uncaught exception)', String(r.gateway.crashes), '0'],
    ['gateway fds: baseline / after (peak)', a ? `${b.fds.total} / ${a.fds.total} (${r.gateway.peakFds})` : gone, `after <= baseline + ${t.fds}`],
    ['  client connections after', a ? String(a.fds.clients) : gone, '0'],
    ['  upstream connections: baseline / after', a ? `${b.fds.upstreams} / ${a.fds.upstreams}` : gone, ''],
    ['gateway RSS: baseline / after (peak)', a ? `${mib(b.rssMiB)} / ${mib(a.rssMiB)} (${mib(r.gateway.peakRssMiB)})` : gone, `after <= baseline + ${t.rssMiB} MiB`],
    ['gateway JS memory (heap used + external): baseline / after', a ? `${mib(b.jsMiB)} / ${mib(a.jsMiB)}` : gone, `after <= baseline + ${t.jsMiB} MiB`],
    ['tunnels open after the clients left', a ? String(a.tunnelsOpen) : gone, '0'],
    ['settled after', a ? `${a.settleSeconds.toFixed(1)} s` : gone, ''],
    ['nodes killed (SIGKILL) and restarted', `${r.kills} (${r.restartFailures} restarts failed)`, ''],
    ['Socket.IO clients: stayed connected / disconnected / reconnected', `${s.stayedConnected} / ${s.disconnectedClients} / ${s.reconnectedClients} of ${s.clients}`, ''],
    ['  lost acks, clients that stayed connected', String(s.lostByStayedConnected), '0'],
    ['  lost acks, any connection that stayed up', String(s.lost), '0'],
    ['  acks with the wrong payload', String(s.mismatched), '0'],
    ['  emits / acked / cut by a disconnect / late', `${s.emits} / ${s.acked} / ${s.cut} / ${s.late}`, ''],
    ['  disconnects / reconnects / slowest ack', `${s.disconnects} / ${s.reconnects} / ${s.maxAckMs} ms`, ''],
    ['  disconnect reasons', counts(s.reasons), ''],
    ['HTTP GET requests', String(r.http.requests), ''],
    ['  by status', counts(r.http.statuses), ''],
    ['  without an answer', counts(r.http.errors), ''],
    ['gateway proxy:error codes', counts(r.gateway.errorCodes), ''],
  ]
  const width = Math.max(...rows.map((row) => row[0].length))
  // Only the figures with a bound line up their bounds; long lists (status counts, codes) run on.
  const valueWidth = Math.max(...rows.filter((row) => row[2]).map((row) => row[1].length))
  const lines = rows.map(([name, value, must]) => `${name.padEnd(width)}  ${value.padEnd(valueWidth)}  ${must ? `must be ${must}` : ''}`.trimEnd())
  const spare = r.options.spare ? ', first node spared' : ''
  const head = `chaos run ${r.startedAt}: ${r.options.seconds} s, ${r.options.clients} clients${spare}, node ${r.machine.node}, ${r.machine.cpus} cores`
  const verdict = r.failures.length === 0 ? 'PASS' : `FAIL\n  ${r.failures.join('\n  ')}`
  const details: string[] = []
  if (r.gateway.stderr) details.push(`gateway stderr (last lines):\n${r.gateway.stderr.split('\n').slice(-10).join('\n')}`)
  if (a !== null && a.fds.clients > 0) details.push(`client connections still open: ${counts(a.clientConnections)}`)
  for (const c of r.clientsThatLostAcks) details.push(`client ${c.id} (${c.transport}) lost ${c.lost} acks:\n  ${c.history.join('\n  ')}`)
  if (r.clientsThatLostAcks.length > 0) details.push(`kills and restarts:\n  ${r.timeline.join('\n  ')}`)
  return [head, ...lines, ...details, verdict].join('\n')
}

async function main (): Promise<void> {
  let options: ChaosOptions | undefined
  try {
    options = parseOptions(process.argv.slice(2))
  } catch (err) {
    console.error((err as Error).message)
    process.exitCode = 2
    return
  }
  if (!options) {
    console.log(USAGE)
    return
  }
  const watchdogMs = options.seconds * 1000 + 120_000
  const watchdog = setTimeout(() => {
    console.error(`chaos: the run took over ${watchdogMs / 1000} s; stopping it`)
    stopEverything().finally(() => process.exit(3))
  }, watchdogMs)
  const onSignal = (): void => { stopEverything().finally(() => process.exit(130)) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const result = await chaos(options)
    console.log(options.json ? JSON.stringify(result, null, 2) : formatResult(result))
    process.exitCode = result.failures.length === 0 ? 0 : 1
  } catch (err) {
    console.error(`chaos: ${(err as Error).message}`)
    process.exitCode = 2
  } finally {
    await stopEverything()
    clearTimeout(watchdog)
  }
  // A client library may still hold a handle (a reconnect timer); don't let it hold the terminal too.
  setTimeout(() => process.exit(), 2_000).unref()
}

await main()
