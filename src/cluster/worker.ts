/**
 * The worker side of sockgate/cluster: run the app's `start()`, tell the
 * primary once every server listens, answer its gatherings with this
 * process's own figures, and on its word stop accepting, drain and exit.
 */
import type { Server } from 'node:net'
import { Gateway } from '../gateway.js'
import { InvalidOptionError } from '../errors.js'
import type { GatewayStatus } from '../types.js'
import {
  GATHER_TIMEOUT_MS, isClusterMessage, type FiguresQuery, type PrimaryMessage, type RemoteError, type WorkerMessage,
} from './messages.js'
import { mergeMetrics, mergeStatus } from './merge.js'

/** What `start()` returns: the gateway(s) whose pages answer for the box, and the server(s) that listen. */
export interface ClusterApp {
  gateway: Gateway | readonly Gateway[]
  server: Server | readonly Server[]
}

function list<T> (value: T | readonly T[]): readonly T[] {
  return Array.isArray(value) ? value : [value as T]
}

function send (msg: WorkerMessage, done?: (err: Error | null) => void): void {
  try {
    process.send!(msg, undefined, undefined, done)
  } catch (err) {
    // The primary is gone; node:cluster ends this worker on the disconnect.
    done?.(err as Error)
  }
}

/** The app's gateways and servers, checked: what the rest of this module relies on. */
function checkApp (app: unknown): { gateways: readonly Gateway[], servers: readonly Server[] } {
  const { gateway, server } = (app ?? {}) as Partial<ClusterApp>
  const gateways = gateway === undefined ? [] : list(gateway)
  const servers = server === undefined ? [] : list(server)
  if (gateways.length === 0 || !gateways.every((g) => g instanceof Gateway)) {
    throw new InvalidOptionError('start', 'must return { gateway, server } with gateway a Gateway (or an array of them)')
  }
  if (servers.length === 0 || !servers.every((s) => typeof s?.listen === 'function' && typeof s.close === 'function')) {
    throw new InvalidOptionError('start', 'must return { gateway, server } with server the listening net.Server (or an array of them)')
  }
  return { gateways, servers }
}

/** Resolves once `server` listens; rejects with its listen error (EADDRINUSE, EACCES). */
function listening (server: Server): Promise<void> {
  if (server.listening) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      server.off('listening', done)
      server.off('error', done)
      if (err === undefined) resolve()
      else reject(err)
    }
    server.once('listening', done)
    server.once('error', done)
  })
}

/** Run `start()` and wait for its servers. */
async function startApp<T extends ClusterApp> (start: () => T | Promise<T>): Promise<{ app: T, gateways: readonly Gateway[], servers: readonly Server[] }> {
  const app = await start()
  const { gateways, servers } = checkApp(app)
  await Promise.all(servers.map(listening))
  return { app, gateways, servers }
}

/**
 * Stop accepting (the primary stops handing this worker connections), close
 * the gateways with `drain`, end what HTTP connections are left, and exit.
 */
async function shutdown (gateways: readonly Gateway[], servers: readonly Server[], drain: number): Promise<never> {
  const closed = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))
  await Promise.all(gateways.map((g) => g.close({ drain })))
  for (const s of servers) (s as Partial<import('node:http').Server>).closeAllConnections?.()
  await Promise.all(closed)
  process.exit(0)
}

/**
 * A worker forked by our primary: signals are the primary's to act on (a
 * terminal's Ctrl-C reaches every process of the group), the figures of the
 * box come from the primary, and a failed start is reported to it.
 */
export async function runManagedWorker<T extends ClusterApp> (start: () => T | Promise<T>): Promise<T> {
  const ignore = (): void => {}
  process.on('SIGINT', ignore)
  process.on('SIGTERM', ignore)
  let started: Awaited<ReturnType<typeof startApp<T>>> | undefined
  let stopping = false
  const asks = new Map<number, (value: GatewayStatus | string | null) => void>()
  let nextAsk = 1

  process.on('message', (msg: unknown) => {
    if (!isClusterMessage<PrimaryMessage>(msg)) return
    if (msg.type === 'gather') {
      const gateway = started?.gateways[msg.query.gateway]
      const value = gateway === undefined ? null : msg.query.what === 'status' ? gateway.status() : gateway.metrics()
      send({ sockgate: 'cluster', type: 'part', id: msg.id, value })
    } else if (msg.type === 'answer') {
      asks.get(msg.id)?.(msg.value)
    } else if (msg.type === 'shutdown' && !stopping) {
      stopping = true
      // Not started yet: nothing listens and no tunnel is open.
      if (started === undefined) process.exit(0)
      shutdown(started.gateways, started.servers, msg.drain).catch(() => process.exit(1))
    }
  })

  /** The box's figures from the primary; this worker's own (as the only one counted) when it does not answer. */
  const ask = (gateway: Gateway, query: FiguresQuery): Promise<GatewayStatus | string> => new Promise((resolve) => {
    const id = nextAsk++
    const own = (): void => {
      asks.delete(id)
      clearTimeout(timer)
      const part = [{ pid: process.pid, value: query.what === 'status' ? gateway.status() : gateway.metrics() }]
      resolve(query.what === 'status' ? mergeStatus(part as Array<{ pid: number, value: GatewayStatus }>) : mergeMetrics(part as Array<{ pid: number, value: string }>))
    }
    // Twice the primary's own wait: it answers with what it has by then.
    const timer = setTimeout(own, 2 * GATHER_TIMEOUT_MS).unref()
    asks.set(id, (value) => {
      asks.delete(id)
      clearTimeout(timer)
      if (value === null) own()
      else resolve(value)
    })
    send({ sockgate: 'cluster', type: 'ask', id, query }, (err) => { if (err !== null) own() })
  })

  try {
    started = await startApp(start)
  } catch (err) {
    const error = describeError(err)
    await new Promise<void>((resolve) => send({ sockgate: 'cluster', type: 'start-failed', error }, () => resolve()))
    process.exit(1)
  }
  started.gateways.forEach((gateway, index) => {
    gateway.statusProvider = {
      status: () => ask(gateway, { gateway: index, what: 'status' }) as Promise<GatewayStatus>,
      metrics: () => ask(gateway, { gateway: index, what: 'metrics' }) as Promise<string>,
    }
  })
  if (stopping) shutdown(started.gateways, started.servers, 0).catch(() => process.exit(1))
  else send({ sockgate: 'cluster', type: 'ready' })
  return started.app
}

/**
 * A worker of some other primary (PM2's cluster mode): the page answers for
 * this process alone, and SIGINT/SIGTERM (what PM2 sends on stop and reload)
 * drain it; a second signal exits at once.
 */
export async function runForeignWorker<T extends ClusterApp> (start: () => T | Promise<T>, drain: number): Promise<T> {
  const { app, gateways, servers } = await startApp(start)
  let signalled = false
  const onSignal = (): void => {
    if (signalled) process.exit(1)
    signalled = true
    shutdown(gateways, servers, drain).catch(() => process.exit(1))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  return app
}

/** A `start()` failure as the primary reports it: the worker's message and code, kept. */
function describeError (err: unknown): RemoteError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) }
  const { code, statusCode } = err as { code?: unknown, statusCode?: unknown }
  return {
    name: err.name,
    message: err.message,
    ...(typeof code === 'string' ? { code } : {}),
    ...(typeof statusCode === 'number' ? { statusCode } : {}),
    ...(err.stack === undefined ? {} : { stack: err.stack }),
  }
}
