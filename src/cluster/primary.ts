/**
 * The primary of sockgate/cluster: forks the workers (node:cluster shares
 * their port), replaces one that dies after a back-off that grows while
 * they keep dying, gathers every worker's figures for a status page, and on
 * SIGTERM/SIGINT drains them all and exits when they have.
 */
import cluster, { type Worker } from 'node:cluster'
import { SockgateError, type ErrorCode } from '../errors.js'
import type { NormalizedClusterOptions } from '../options.js'
import type { GatewayStatus, Logger } from '../types.js'
import { mergeMetrics, mergeStatus, type WorkerPart } from './merge.js'
import { BoxSessions } from './sessions.js'
import {
  GATHER_TIMEOUT_MS, isClusterMessage, WORKER_ENV, type FiguresQuery, type PrimaryMessage, type RemoteError, type WorkerMessage,
} from './messages.js'

/** What `startCluster()` resolves to in the primary. */
export interface ClusterPrimary {
  /** Process ids of the live workers. */
  readonly pids: number[]
  /** What SIGTERM does: every worker stops accepting, drains and exits; resolves when all have. */
  close (): Promise<void>
}

/** A worker that lived this long after it listened was not crash-looping: its replacement starts at once. */
const STABLE_MS = 10_000
/** The first delay before replacing a worker that died young; it doubles with each one that does, up to the cap. */
const RESTART_BASE_MS = 500
const RESTART_MAX_MS = 30_000
/** After the drain, how long a worker may take to close up before it is killed. */
const SHUTDOWN_GRACE_MS = 5_000

/** One place in the box: the worker holding it now, and how it has been dying. */
interface Slot {
  worker: Worker | null
  readyAt: number | null
  quickExits: number
  restart: NodeJS.Timeout | undefined
  /** Set by the worker's `start-failed`, reported when it exits. */
  failure: RemoteError | undefined
}

interface Gathering {
  asker: Worker
  /** The asker's own id for its question, so the answer reaches the right page. */
  askId: number
  query: FiguresQuery
  parts: Map<number, GatewayStatus | string | null>
  timer: NodeJS.Timeout
}

/** Lines on stderr: a primary with no logger must still say why a worker went away. */
const STDERR_LOGGER: Logger = {
  info: (obj, msg) => { process.stderr.write(`${msg ?? ''} ${JSON.stringify(obj)}\n`) },
  warn: (obj, msg) => { process.stderr.write(`${msg ?? ''} ${JSON.stringify(obj)}\n`) },
  error: (obj, msg) => { process.stderr.write(`${msg ?? ''} ${JSON.stringify(obj)}\n`) },
  debug: () => {},
}

export class Primary implements ClusterPrimary {
  private readonly options: NormalizedClusterOptions<unknown>
  private readonly log: Logger
  private readonly slots: Slot[]
  private readonly gatherings = new Map<number, Gathering>()
  /** The learned engine.io sessions of every worker: kept here, so they outlive any one worker. */
  private readonly sessions = new BoxSessions()
  private nextGathering = 1
  private starting: { resolve: () => void, reject: (err: Error) => void } | undefined
  private closing: Promise<void> | undefined
  private allExited: (() => void) | undefined
  private signalled = false
  private readonly onSignal = (): void => this.signal()

  constructor (options: NormalizedClusterOptions<unknown>) {
    this.options = options
    this.log = options.logger ?? STDERR_LOGGER
    this.slots = Array.from({ length: options.workers }, () => ({ worker: null, readyAt: null, quickExits: 0, restart: undefined, failure: undefined }))
  }

  get pids (): number[] {
    const pids: number[] = []
    for (const slot of this.slots) if (slot.worker?.process.pid !== undefined) pids.push(slot.worker.process.pid)
    return pids
  }

  /** Fork every worker; resolves once each listens, rejects (with every worker stopped) when one cannot start. */
  start (): Promise<this> {
    process.on('SIGTERM', this.onSignal)
    process.on('SIGINT', this.onSignal)
    return new Promise((resolve, reject) => {
      this.starting = { resolve: () => resolve(this), reject }
      for (const slot of this.slots) this.fork(slot)
    })
  }

  private fork (slot: Slot): void {
    slot.restart = undefined
    slot.readyAt = null
    slot.failure = undefined
    const worker = cluster.fork({ [WORKER_ENV]: '1' })
    slot.worker = worker
    worker.on('message', (msg: unknown) => {
      if (isClusterMessage<WorkerMessage>(msg)) this.onMessage(slot, worker, msg)
    })
    worker.on('exit', (code, signal) => this.onExit(slot, worker, code, signal))
    // An IPC write to a worker that just died; its 'exit' follows.
    worker.on('error', () => {})
  }

  private onMessage (slot: Slot, worker: Worker, msg: WorkerMessage): void {
    switch (msg.type) {
      case 'ready':
        slot.readyAt = Date.now()
        if (this.starting !== undefined && this.slots.every((s) => s.readyAt !== null)) {
          this.starting.resolve()
          this.starting = undefined
        }
        return
      case 'start-failed':
        slot.failure = msg.error
        return
      case 'ask':
        return this.gather(worker, msg.id, msg.query)
      case 'part': {
        const gathering = this.gatherings.get(msg.id)
        if (gathering === undefined || worker.process.pid === undefined) return
        gathering.parts.set(worker.process.pid, msg.value)
        if ([...gathering.parts.values()].every((v) => v !== null)) this.answer(msg.id)
        return
      }
      case 'sid-get':
      case 'sid-set':
      case 'sid-del':
      case 'sid-touch': {
        const answer = this.sessions.handle(msg)
        if (answer !== undefined) this.post(worker, answer)
      }
    }
  }

  private onExit (slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return
    slot.worker = null
    const pid = worker.process.pid
    const how = signal === null ? `code ${code}` : `signal ${signal}`
    if (this.closing !== undefined) {
      if (this.slots.every((s) => s.worker === null)) this.allExited?.()
      return
    }
    if (this.starting !== undefined) {
      // A worker that cannot start will not start on the next try either: the app's start-up is broken.
      const reject = this.starting.reject
      this.starting = undefined
      const error = startError(pid, how, slot.failure)
      this.close().then(() => reject(error), () => reject(error))
      return
    }
    const now = Date.now()
    const stable = slot.readyAt !== null && now - slot.readyAt >= STABLE_MS
    slot.quickExits = stable ? 0 : slot.quickExits + 1
    const delay = slot.quickExits === 0 ? 0 : Math.min(RESTART_BASE_MS * 2 ** (slot.quickExits - 1), RESTART_MAX_MS)
    const fields = { pid, code, signal, restartInMs: delay, ...(slot.failure === undefined ? {} : { error: slot.failure.message }) }
    const why = slot.failure === undefined ? '' : ` (start() failed: ${slot.failure.message})`
    this.log.warn(fields, `sockgate/cluster: worker ${pid} exited with ${how}${why}; starting another in ${delay} ms`)
    slot.restart = setTimeout(() => this.fork(slot), delay)
  }

  /** Ask every listening worker for its figures; answer `asker` when all did, or with those in at the timeout. */
  private gather (asker: Worker, askId: number, query: FiguresQuery): void {
    const id = this.nextGathering++
    const parts = new Map<number, GatewayStatus | string | null>()
    this.gatherings.set(id, { asker, askId, query, parts, timer: setTimeout(() => this.answer(id), GATHER_TIMEOUT_MS) })
    for (const slot of this.slots) {
      const worker = slot.worker
      if (worker === null || slot.readyAt === null || worker.process.pid === undefined) continue
      parts.set(worker.process.pid, null)
      this.post(worker, { sockgate: 'cluster', type: 'gather', id, query })
    }
    if (parts.size === 0) this.answer(id)
  }

  private answer (id: number): void {
    const gathering = this.gatherings.get(id)
    if (gathering === undefined) return
    this.gatherings.delete(id)
    clearTimeout(gathering.timer)
    const parts = [...gathering.parts].map(([pid, value]) => ({ pid, value }))
    const value = gathering.query.what === 'status'
      ? mergeStatus(parts as Array<WorkerPart<GatewayStatus>>)
      : mergeMetrics(parts as Array<WorkerPart<string>>)
    this.post(gathering.asker, { sockgate: 'cluster', type: 'answer', id: gathering.askId, value })
  }

  private post (worker: Worker, msg: PrimaryMessage): void {
    if (!worker.isConnected()) return
    try {
      worker.send(msg)
    } catch {
      // It is going away; its 'exit' does the rest.
    }
  }

  close (): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown (): Promise<void> {
    const drain = this.options.drain
    for (const slot of this.slots) {
      clearTimeout(slot.restart)
      slot.restart = undefined
    }
    const exited = new Promise<void>((resolve) => { this.allExited = resolve })
    if (this.slots.every((s) => s.worker === null)) this.allExited?.()
    for (const slot of this.slots) if (slot.worker !== null) this.post(slot.worker, { sockgate: 'cluster', type: 'shutdown', drain })
    // A worker stuck past its drain (an app socket the gateway does not own, a hung close) is killed.
    const deadline = setTimeout(() => this.kill(), drain + SHUTDOWN_GRACE_MS)
    await exited
    clearTimeout(deadline)
    process.off('SIGTERM', this.onSignal)
    process.off('SIGINT', this.onSignal)
  }

  private kill (): void {
    for (const slot of this.slots) slot.worker?.process.kill('SIGKILL')
  }

  /** First signal: drain and exit 0. Second: kill the workers and exit 1. */
  private signal (): void {
    if (this.signalled) {
      this.kill()
      process.exit(1)
    }
    this.signalled = true
    this.log.info({ drain: this.options.drain, workers: this.pids }, `sockgate/cluster: draining ${this.pids.length} workers for up to ${this.options.drain} ms`)
    this.close().then(() => process.exit(0), () => process.exit(1))
  }
}

/** The error `startCluster()` rejects with: the worker's own code and message when it had them. */
function startError (pid: number | undefined, how: string, failure: RemoteError | undefined): Error {
  if (failure === undefined) return new Error(`sockgate/cluster: worker ${pid} exited with ${how} before it listened; see its output above`)
  const message = `sockgate/cluster: worker ${pid} could not start: ${failure.message}`
  const cause = Object.assign(new Error(failure.message), failure)
  if (failure.code?.startsWith('SOCKGATE_ERR_') === true) {
    const error = new SockgateError(failure.code as ErrorCode, failure.statusCode ?? 0, message, { cause })
    error.name = failure.name
    return error
  }
  return Object.assign(new Error(message, { cause }), failure.code === undefined ? {} : { code: failure.code })
}
