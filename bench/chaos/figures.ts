/** What the chaos run reads of the gateway: fds from /proc, memory, its status page and its own report. */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { get } from 'node:http'
import type { NodeChild } from '../children.js'
import { readProcStats } from '../measure.js'
import { sleep } from '../workloads/wait.js'

export const MIB = 1024 * 1024
/** Answered by the gateway child itself (gateway.ts), not by the gateway. */
export const REPORT_PATH = '/__chaos'

/** What the gateway child answers on REPORT_PATH. */
export interface GatewayReport {
  uncaught: number
  errorCodes: Record<string, number>
  /** V8 heap in use plus external memory (where Buffers live). */
  jsBytes: number
}

export interface FdCount {
  total: number
  /** Accepted connections from clients (the gateway's listening socket not counted). */
  clients: number
  /** Connections to the upstream nodes (pooled keep-alive, tunnels, health checks). */
  upstreams: number
}

/** proc(5) /proc/net/tcp `st` codes (hex), by number. */
const TCP_STATES = ['', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING']

interface TcpSocket { inode: string, local: number, remote: number, state: string }

/** Every TCP socket of the gateway's network namespace (loopback here), as ports and state. */
function tcpSockets (pid: number): TcpSocket[] {
  const sockets: TcpSocket[] = []
  for (const file of ['tcp', 'tcp6']) {
    let text = ''
    try { text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/)
      if (f.length < 10) continue
      const port = (address: string): number => parseInt(address.slice(address.lastIndexOf(':') + 1), 16)
      sockets.push({ inode: f[9]!, local: port(f[1]!), remote: port(f[2]!), state: TCP_STATES[parseInt(f[3]!, 16)] ?? f[3]! })
    }
  }
  return sockets
}

/** Socket inodes among a process's open fds. */
function socketInodes (pid: number | 'self'): Set<string> {
  const inodes = new Set<string>()
  let fds: string[] = []
  try { fds = readdirSync(`/proc/${pid}/fd`) } catch {} // it exited; the caller sees that from the child
  for (const fd of fds) {
    try {
      const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1]
      if (inode !== undefined) inodes.add(inode)
    } catch {} // closed while we looked
  }
  return inodes
}

/** An accepted connection of the gateway (its listening socket is not one). */
const isClientEnd = (s: TcpSocket, gatewayPort: number): boolean => s.local === gatewayPort && s.state !== 'LISTEN'

/**
 * Client connections the gateway still holds, by the TCP state of both ends: `CLOSE_WAIT` on the
 * gateway's side means the client closed and the gateway did not; both `ESTABLISHED` with the client
 * end held by this process means the load generator never closed it.
 */
export function describeClientConnections (pid: number, gatewayPort: number): Record<string, number> {
  const all = tcpSockets(pid)
  const gateways = socketInodes(pid)
  const mine = socketInodes('self')
  const seen: Record<string, number> = {}
  for (const conn of all.filter((s) => gateways.has(s.inode) && isClientEnd(s, gatewayPort))) {
    const peer = all.find((s) => s.local === conn.remote && s.remote === gatewayPort)
    const peerText = peer === undefined ? 'client end gone' : `client end ${peer.state}${mine.has(peer.inode) ? ' held here' : ''}`
    const key = `gateway end ${conn.state}, ${peerText}`
    seen[key] = (seen[key] ?? 0) + 1
  }
  return seen
}

export function countFds (pid: number, gatewayPort: number, upstreamPorts: number[]): FdCount {
  let total = 0
  try { total = readdirSync(`/proc/${pid}/fd`).length } catch {} // it exited; the caller sees that from the child
  const own = socketInodes(pid)
  const sockets = tcpSockets(pid).filter((s) => own.has(s.inode))
  return {
    total,
    clients: sockets.filter((s) => isClientEnd(s, gatewayPort)).length,
    upstreams: sockets.filter((s) => upstreamPorts.includes(s.remote)).length,
  }
}

/** The smallest of a few samples: health checks open and close a connection per node every half second. */
export async function sampleFds (pid: number, gatewayPort: number, upstreamPorts: number[]): Promise<FdCount> {
  let best: FdCount | undefined
  for (let i = 0; i < 5; i++) {
    const count = countFds(pid, gatewayPort, upstreamPorts)
    if (best === undefined || count.total < best.total) best = count
    await sleep(100)
  }
  return best!
}

/** GET on a connection of its own, closed afterwards, so that it leaves nothing open in the gateway. */
function getJson<T> (port: number, path: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path, agent: false, headers: { accept: 'application/json' }, timeout: 5_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => { try { resolve(JSON.parse(text) as T) } catch (err) { reject(err) } })
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)))
    req.on('error', reject)
  })
}

interface GatewayStatus { tunnels: { open: number }, pools: Record<string, { servers: { state: string }[] }> }

export const statusOf = (port: number): Promise<GatewayStatus> => getJson<GatewayStatus>(port, '/sockgate/status?format=json')

/** The gateway's resources at one moment. */
export interface GatewayFigures { fds: FdCount, rssMiB: number, jsMiB: number }

/**
 * Memory after two full collections (the child runs with --expose-gc): RSS from /proc/<pid>/status,
 * JS memory and the rest of the report from the child. Take `fds` first: this opens a connection.
 */
export async function measure (gateway: NodeChild, port: number, fds: FdCount): Promise<{ figures: GatewayFigures, report: GatewayReport }> {
  await gateway.stats('gc')
  const rss = readProcStats([gateway.pid!]).rss
  const report = await getJson<GatewayReport>(port, REPORT_PATH)
  return { figures: { fds, rssMiB: rss / MIB, jsMiB: report.jsBytes / MIB }, report }
}
