/**
 * The gateway of the chaos run, in a process of its own so that its crashes,
 * fds and RSS can be seen from outside:
 * `node --expose-gc .bench-build/bench/chaos/gateway.js <node port>...` (compiled by bench/children.ts).
 *
 * createGateway() on a bare node:http server with the default pool options
 * (two or more servers, so engine.io stickiness is on), short engine.io
 * health checks so that a killed node is out within about a second, and the
 * status page. REPORT_PATH is answered here, before the gateway sees it.
 */
import { createServer } from 'node:http'
import { createGateway } from '../../src/index.js'
import { serveStats, tellParent } from '../measure.js'
import { listen } from '../proxies/listen.js'
import { REPORT_PATH, type GatewayReport } from './figures.js'

const HEALTH = { type: 'engine.io', interval: 500, timeout: 400, fall: 2, rise: 2 } as const
const ports = process.argv.slice(2).map(Number)

let uncaught = 0
// Counted and printed, not fatal: the run goes on and reports it (a real deployment would have died here).
process.on('uncaughtException', (err) => { uncaught++; console.error('[chaos gateway] uncaught exception:', err) })
process.on('unhandledRejection', (err) => { uncaught++; console.error('[chaos gateway] unhandled rejection:', err) })
const gateway = createGateway({ target: ports.map((p) => `http://127.0.0.1:${p}`), health: HEALTH, status: true })
const errorCodes: Record<string, number> = {}
gateway.on('proxy:error', ({ error }) => { errorCodes[error.code] = (errorCodes[error.code] ?? 0) + 1 })
const server = createServer((req, res) => {
  if (req.url !== REPORT_PATH) return gateway.handleRequest(req, res)
  const { heapUsed, external } = process.memoryUsage()
  const report: GatewayReport = { uncaught, errorCodes, jsBytes: heapUsed + external }
  res.writeHead(200, { 'content-type': 'application/json', connection: 'close' }).end(JSON.stringify(report))
})
gateway.attach(server)
const port = await listen(server)
serveStats()
tellParent({ type: 'ready', port })
