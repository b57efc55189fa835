/** The chaos run's load: Socket.IO clients that count every ack, and plain HTTP GET loops. */
import { io, type Socket } from 'socket.io-client'
import type { Pool } from 'undici'
import type { TrackingAgent } from '../workloads/socketio.js'
import { sleep } from '../workloads/wait.js'

const EMIT_EVERY_MS: [number, number] = [100, 200]
/** An emit without its ack for this long, on a connection that did not drop, is lost. */
export const ACK_DEADLINE_MS = 10_000
export const HTTP_LOOPS = 4
const HTTP_PAUSE_MS = 10

export type Transport = 'default' | 'polling' | 'websocket'

export interface SioTally {
  emits: number
  acked: number
  /** Acks whose payload differed from what was sent. */
  mismatched: number
  /** Emits whose ack was overdue (ACK_DEADLINE_MS) while their connection stayed up. */
  lost: number
  /** Emits whose connection dropped before the ack was due. */
  cut: number
  /** Acks that came after their emit was counted cut or lost. */
  late: number
  maxAckMs: number
  disconnects: number
  /** Socket.IO's reason for each disconnect ('transport close', 'transport error', ...). */
  reasons: Record<string, number>
  reconnects: number
}

const HISTORY_ENTRIES = 40

/** A Socket.IO client that emits with an ack every 100-200 ms while connected and reconnects by itself. */
export class ChaosClient {
  readonly socket: Socket
  /** Emits waiting for their ack: when they were sent, and over which transport. */
  readonly #pending = new Map<number, { at: number, over: string }>()
  #seq = 0
  #timer: NodeJS.Timeout | undefined
  connects = 0
  disconnects = 0
  lost = 0
  /** What happened to this client, for the report when it lost acks (the last HISTORY_ENTRIES events). */
  readonly history: string[] = []
  #leaving = false

  constructor (port: number, readonly id: number, readonly transport: Transport, agent: TrackingAgent, private readonly tally: SioTally, private readonly epoch: number) {
    this.socket = io(`http://127.0.0.1:${port}`, {
      ...(transport === 'default' ? {} : { transports: [transport] }),
      forceNew: true,
      reconnectionDelay: 250,
      reconnectionDelayMax: 2_000,
      timeout: 5_000,
      agent: agent as unknown as string,
      autoUnref: true,
    })
    this.socket.on('connect', () => {
      if (this.connects++ > 0) tally.reconnects++
      this.#note(`connect (sid ${this.socket.io.engine.id}, ${this.#over()})`)
      this.socket.io.engine.once('upgrade', () => this.#note(`upgrade to ${this.#over()}`))
    })
    this.socket.on('disconnect', (reason) => {
      if (this.#leaving) return
      this.disconnects++
      tally.disconnects++
      tally.reasons[reason] = (tally.reasons[reason] ?? 0) + 1
      this.#note(`disconnect: ${reason}, ${this.#pending.size} acks due`)
      // Acks still due go with the connection; one already overdue was lost while it was up.
      const now = Date.now()
      for (const { at, over } of this.#pending.values()) {
        if (now - at > ACK_DEADLINE_MS) this.#lose(at, over)
        else tally.cut++
      }
      this.#pending.clear()
    })
  }

  get pending (): number { return this.#pending.size }

  startEmitting (): void {
    const [min, max] = EMIT_EVERY_MS
    this.#timer = setTimeout(() => {
      if (this.socket.connected) this.#emit()
      this.startEmitting()
    }, min + Math.random() * (max - min))
  }

  stopEmitting (): void { clearTimeout(this.#timer) }

  /** Counts as lost every emit overdue on a connection that is still up. */
  sweep (): void {
    const now = Date.now()
    for (const [seq, { at, over }] of this.#pending) {
      if (now - at <= ACK_DEADLINE_MS) continue
      this.#pending.delete(seq)
      this.#lose(at, over)
    }
  }

  /** The client's engine has closed (its close packet, if any, is on its way). */
  get closed (): boolean {
    const state = this.socket.io.engine?.readyState
    return state === undefined || state === 'closed'
  }

  leave (): void {
    this.#leaving = true
    this.stopEmitting()
    this.socket.disconnect()
  }

  #lose (at: number, over: string): void {
    if (this.lost++ === 0) this.#note(`first lost ack: emitted at ${this.#since(at)} over ${over}, still ${this.socket.connected ? 'connected' : 'not connected'} over ${this.#over()}`)
    this.tally.lost++
  }

  /** The transport the client is on now. */
  #over (): string { return this.socket.io.engine?.transport?.name ?? 'none' }

  #since (at: number): string { return `+${((at - this.epoch) / 1000).toFixed(1)} s` }

  #note (event: string): void {
    this.history.push(`${this.#since(Date.now())} ${event}`)
    if (this.history.length > HISTORY_ENTRIES) this.history.shift()
  }

  #emit (): void {
    const seq = ++this.#seq
    const payload = `${this.id}:${seq}`
    this.#pending.set(seq, { at: Date.now(), over: this.#over() })
    this.tally.emits++
    this.socket.emit('ack', payload, (echo: unknown) => {
      const sent = this.#pending.get(seq)
      if (sent === undefined) {
        this.tally.late++
        return
      }
      this.#pending.delete(seq)
      this.tally.acked++
      if (echo !== payload) this.tally.mismatched++
      this.tally.maxAckMs = Math.max(this.tally.maxAckMs, Date.now() - sent.at)
    })
  }
}

// ---------------------------------------------------------------- HTTP load

export interface HttpTally { requests: number, statuses: Record<string, number>, errors: Record<string, number> }

/** HTTP_LOOPS loops of GET /small over `pool`, each pausing a little between requests; resolves when all stopped. */
export function runHttpLoad (pool: Pool, stopped: () => boolean, tally: HttpTally): Promise<void> {
  const loop = async (): Promise<void> => {
    while (!stopped()) {
      try {
        const { statusCode, body } = await pool.request({ path: '/small', method: 'GET' })
        await body.dump()
        tally.statuses[statusCode] = (tally.statuses[statusCode] ?? 0) + 1
      } catch (err) {
        // No answer at all (a reset, a timeout): what the gateway must never do to a client.
        const code = (err as { code?: string }).code ?? 'error'
        tally.errors[code] = (tally.errors[code] ?? 0) + 1
      }
      tally.requests++
      await sleep(HTTP_PAUSE_MS)
    }
  }
  return Promise.all(Array.from({ length: HTTP_LOOPS }, loop)).then(() => {})
}
