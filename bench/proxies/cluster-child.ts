/**
 * Entry of a sockgate/cluster proxy child: `cluster-child.ts <workers> <target>`.
 *
 * The process is the cluster's primary: its workers each run sockgate's core
 * on a bare node:http server (as bench/proxies/sockgate.ts does) and share
 * one port. The figures it reports are the whole box's: its own CPU and
 * memory plus every worker's, read from /proc.
 */
import cluster from 'node:cluster'
import { createServer } from 'node:http'
import { ownStats, readProcStats, tellParent, type ProcStats, type StatsReply, type StatsRequest } from '../measure.js'
import { importProject, type CoreModule } from './sockgate-api.js'

interface ClusterModule {
  startCluster (options: { workers: number, drain: number, start: () => { gateway: unknown, server: unknown } }): Promise<{ pids: number[] } | object>
}

const [workers, target] = process.argv.slice(2)
const { createGateway } = await importProject<CoreModule>('src/index.js')
const { startCluster } = await importProject<ClusterModule>('src/cluster.js')

let port = 0
cluster.on('listening', (_worker, address) => { port = address.port })

const handle = await startCluster({
  workers: Number(workers),
  // The bench stops a target with SIGTERM between windows: no tunnel is worth waiting for.
  drain: 0,
  start: () => {
    const gateway = createGateway({ target: target! })
    const server = createServer((req, res) => { gateway.handleRequest(req, res) })
    gateway.attach(server)
    server.listen({ host: '127.0.0.1', port: 0 })
    return { gateway, server }
  },
})

if ('pids' in handle) {
  const box = (): ProcStats => {
    const own = ownStats()
    const others = readProcStats(handle.pids)
    return { cpuUs: own.cpuUs + others.cpuUs, rss: own.rss + others.rss, maxRss: own.maxRss + others.maxRss }
  }
  // CPU profiles and collections are per process; here every request gets the figures of the whole box.
  process.on('message', (msg: StatsRequest) => {
    const reply: StatsReply = { id: msg.id, stats: box() }
    process.send?.(reply)
  })
  process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'))
  tellParent({ type: 'ready', port })
}
