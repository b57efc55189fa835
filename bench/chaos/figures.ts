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
export interface GatewayReport { uncaught: number, errorCodes: Record<string, number>, heapUsed: number }

export interface FdCount {
  total: number
  /** Accepted connections from clients (the gateway's listening socket not counted). */
  clients: number
  /** Connections to the upstream nodes (pooled keep-alive, tunnels, health checks). */
  upstreams: number
}

/** TCP sockets by inode, from the gateway's network namespace, as local and remote ports. */
function tcpSockets (pid: number): Map<string, { local: number, remote: number, listening: boolean }> {
  const sockets = new Map<string, { local: number, remote: number, listening: boolean }>()
  for (const file of ['tcp', 'tcp6']) {
    let text = ''
    try { text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/)
      if (f.length < 10) continue
      const port = (address: string): number => parseInt(address.slice(address.lastIndexOf(':') + 1), 16)
      sockets.set(f[9]!, { local: port(f[1]!), remote: port(f[2]!), listening: f[3] === '0A' })
    }
  }
  return sockets
}

export function countFds (pid: number, gatewayPort: number, upstreamPorts: number[]): FdCount {
  const sockets = tcpSockets(pid)
  const count: FdCount = { total: 0, clients: 0, upstreams: 0 }
  let fds: string[] = []
  try { fds = readdirSync(`/proc/${pid}/fd`) } catch {} // it exited; the caller sees that from the child
  for (const fd of fds) {
    count.total++
    let target = ''
    try { target = readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { continue }
    const tcp = sockets.get(/^socket:\[(\d+)\]$/.exec(target)?.[1] ?? '')
    if (tcp === undefined) continue
    if (tcp.local === gatewayPort && !tcp.listening) count.clients++
    else if (upstreamPorts.includes(tcp.remote)) count.upstreams++
  }
  return count
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
export interface GatewayFigures { fds: FdCount, rssMiB: number, heapUsedMiB: number }

/**
 * Memory after two full collections (the child runs with --expose-gc): RSS from /proc/<pid>/status,
 * the live heap and the rest of the report from the child. Take `fds` first: this opens a connection.
 */
export async function measure (gateway: NodeChild, port: number, fds: FdCount): Promise<{ figures: GatewayFigures, report: GatewayReport }> {
  await gateway.stats('gc')
  const rss = readProcStats([gateway.pid!]).rss
  const report = await getJson<GatewayReport>(port, REPORT_PATH)
  return { figures: { fds, rssMiB: rss / MIB, heapUsedMiB: report.heapUsed / MIB }, report }
}
