/**
 * The sockgate demo: one app on PORT serving a chat page under /assets and
 * proxying /socket.io/ to three Socket.IO nodes it starts itself. The page
 * can stop, start and drain each node; the gateway's log goes to stdout.
 *
 *   npm start -- --framework=express|koa|fastify|core --transport=websocket|polling|both --log=text|json [--redis]
 *
 * With --redis the nodes are processes of their own joined by Redis, and the
 * gateway runs in two sockgate/cluster workers (demo/across-processes.ts).
 *
 * Env: PORT (default 8080; 0 picks a free port), HOST (default 127.0.0.1),
 * SOCKGATE_FRAMEWORK, SOCKGATE_TRANSPORT, SOCKGATE_LOG. Flags win over env.
 * Ctrl+C stops it.
 */
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type { Gateway, GatewayOptions, Logger } from '../src/index.js'
import { createApp, FRAMEWORKS, type DemoApp, type Framework } from './apps.js'
import { DRAIN_TIMEOUT_MS, localActions, nodeControls, type NodeActions } from './controls.js'
import { createLogger, LOG_FORMATS, type LogFormat } from './log.js'
import { startNodes } from './nodes.js'

const TRANSPORTS = ['websocket', 'polling', 'both'] as const
const STATUS_PATH = '/sockgate/status'
const POOL = 'chat_nodes'
type Transport = typeof TRANSPORTS[number]

const USAGE = `usage: npm start -- [--framework=${FRAMEWORKS.join('|')}] [--transport=${TRANSPORTS.join('|')}] [--log=${LOG_FORMATS.join('|')}] [--redis]
env: PORT (default 8080), HOST (default 127.0.0.1), SOCKGATE_FRAMEWORK, SOCKGATE_TRANSPORT, SOCKGATE_LOG`

function fail (message: string): never {
  console.error(`${message}\n${USAGE}`)
  process.exit(2)
}

function oneOf<T extends string> (name: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T
  fail(`${name} must be one of ${allowed.join(', ')} (got ${JSON.stringify(value)})`)
}

interface Settings { framework: Framework, transport: Transport, log: LogFormat, port: number, host: string, redis: boolean }

function readSettings (): Settings {
  let values: { framework?: string, transport?: string, log?: string, redis?: boolean, help?: boolean }
  try {
    values = parseArgs({
      options: {
        framework: { type: 'string' }, transport: { type: 'string' }, log: { type: 'string' }, redis: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      },
    }).values
  } catch (err) {
    fail((err as Error).message)
  }
  if (values.help === true) {
    console.log(USAGE)
    process.exit(0)
  }
  const port = Number(process.env.PORT ?? 8080)
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`PORT must be a port number (got ${JSON.stringify(process.env.PORT)})`)
  return {
    framework: oneOf('framework', values.framework ?? process.env.SOCKGATE_FRAMEWORK ?? 'express', FRAMEWORKS),
    transport: oneOf('transport', values.transport ?? process.env.SOCKGATE_TRANSPORT ?? 'both', TRANSPORTS),
    log: oneOf('log', values.log ?? process.env.SOCKGATE_LOG ?? 'text', LOG_FORMATS),
    port,
    host: process.env.HOST ?? '127.0.0.1',
    redis: values.redis === true,
  }
}

/** The gateway's options for the chat nodes at `servers`. */
function gatewayOptions (servers: ReadonlyArray<{ name: string, url: string }>, logger: Logger): GatewayOptions {
  return {
    upstreams: {
      [POOL]: {
        // Named servers: the names show on the status page, in metrics labels and in the log.
        servers: servers.map((n) => ({ url: n.url, name: n.name })),
        // New sessions go round the nodes; engine.io stickiness (the default for two or more servers,
        // spelled out here) sends every later request of a session to the node that holds it.
        balance: 'round-robin',
        sticky: { engineIo: true },
        // A stopped node is seen down within two failed checks (about 2 s) and up again two passing
        // checks after it starts; meanwhile passive health takes it out at its first refused connection.
        health: { type: 'engine.io', interval: 1_000, rise: 2, fall: 2, timeout: 500 },
        maxFails: 1,
        failTimeout: 5_000,
      },
    },
    // Only Socket.IO goes upstream; /assets and the demo's own routes stay in the app.
    routes: [{ path: '/socket.io/', upstream: POOL }],
    status: { path: STATUS_PATH },
    logger,
  }
}

/** The demo app in front of `servers`; its buttons run the actions `actionsFor` gives for the gateway the app built. */
function buildApp (settings: Settings, logger: Logger, servers: ReadonlyArray<{ name: string, url: string }>, actionsFor: (gateway: Gateway) => NodeActions): Promise<DemoApp> {
  return createApp(settings.framework, {
    gateway: gatewayOptions(servers, logger),
    publicDir: fileURLToPath(new URL('./public/', import.meta.url)),
    config: { framework: settings.framework, transport: settings.transport, statusPath: STATUS_PATH, drainTimeoutMs: DRAIN_TIMEOUT_MS },
    controls: (gateway) => nodeControls(actionsFor(gateway), gateway, POOL, logger),
  })
}

function printBanner (url: string, settings: Settings, nodes: ReadonlyArray<{ name: string, url: string }>, extra: string[]): void {
  console.log(`sockgate demo listening on ${url}`)
  console.log(`  chat page: ${url}/assets/index.html (also at ${url}/)`)
  console.log(`  status page: ${url}${STATUS_PATH}`)
  console.log(`  framework ${settings.framework}, transport ${settings.transport}, log ${settings.log}`)
  for (const n of nodes) console.log(`  ${n.name} at ${n.url}`)
  for (const line of extra) console.log(`  ${line}`)
  console.log('  open the URL in two tabs and chat; stop the node a tab is on and watch it move; Ctrl+C stops everything')
  console.log('  the gateway\'s log follows: a line per finished WebSocket tunnel, per node going down or up, per error')
}

/** Ctrl+C (and SIGTERM): `stop` once; a second signal exits at once. */
function onSignals (stop: () => Promise<void>): void {
  let stopping = false
  const handle = (signal: NodeJS.Signals): void => {
    if (stopping) {
      console.log(`${signal} again: exiting now`)
      process.exit(1)
    }
    stopping = true
    console.log(`${signal}: shutting down`)
    stop().catch((err: unknown) => {
      console.error('shutdown failed:', err)
      process.exitCode = 1
    })
  }
  process.on('SIGINT', handle)
  process.on('SIGTERM', handle)
}

async function inOneProcess (settings: Settings, logger: Logger): Promise<void> {
  const nodes = await startNodes(3)
  const app = await buildApp(settings, logger, nodes.nodes, (gateway) => localActions(nodes, gateway.pool(POOL), logger))
  const url = await app.listen(settings.port, settings.host)
  printBanner(url, settings, nodes.nodes, [])
  // The nodes go first, so every client gets a clean Socket.IO disconnect through its still-open tunnel
  // (and does not reconnect); then the app closes the gateway and its server. Nothing calls process.exit():
  // the process ends by itself once every server, socket and timer is gone.
  onSignals(() => nodes.close()
    .then(() => app.close())
    .then(() => console.log('sockgate demo stopped')))
}

async function acrossProcesses (settings: Settings, logger: Logger): Promise<void> {
  // Loaded only for --redis: the one-process demo needs neither node:cluster nor a Redis client.
  const { runAcrossProcesses, WORKERS } = await import('./across-processes.js')
  const started = await runAcrossProcesses(settings.port, settings.host, logger, (servers, actions, drainsTo) =>
    buildApp(settings, logger, servers, (gateway) => {
      drainsTo(gateway.pool(POOL))
      return actions
    }))
  // In a worker, sockgate/cluster runs the app; the rest is the primary's.
  if (started === undefined) return
  printBanner(started.url, settings, started.nodes, [
    `--redis: redis-server at ${started.redisUrl} (pid ${started.redisPid}); the nodes are processes (pids ${started.nodes.map((n) => n.pid).join(', ')}) joined by @socket.io/redis-adapter`,
    `${WORKERS} gateway workers (sockgate/cluster, pids ${started.workerPids.join(', ')}) share the port; the status page counts both`,
  ])
  // The same signal makes sockgate/cluster drain its workers (tunnels run on for a moment) and exit the
  // primary once they are gone; the nodes' clean disconnects go through those tunnels meanwhile.
  onSignals(() => {
    process.once('exit', () => console.log('sockgate demo stopped'))
    return started.stopNodes()
  })
}

async function main (): Promise<void> {
  const settings = readSettings()
  const logger = createLogger(settings.log)
  if (settings.redis) await acrossProcesses(settings, logger)
  else await inOneProcess(settings, logger)
}

main().catch((err: unknown) => {
  if ((err as { code?: unknown }).code === 'EADDRINUSE') console.error(`${(err as Error).message}: set PORT to a free port (PORT=0 picks one)`)
  else console.error(err)
  process.exit(1)
})
