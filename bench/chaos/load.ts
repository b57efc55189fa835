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

export class ChaosClient {
  readonly socket: Socket
  readonly #pending = new Map<number, number>()
  #seq = 0
  #timer: NodeJS.Timeout | undefined
  connects = 0
  disconnects = 0
  lost = 0
  #leaving = false

  constructor (port: number, readonly id: number, readonly transport: Transport, agent: TrackingAgent, private readonly tally: SioTally) {
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
    })
    this.socket.on('disconnect', (reason) => {
      if (this.#leaving) return
      this.disconnects++
      tally.disconnects++
      tally.reasons[reason] = (tally.reasons[reason] ?? 0) + 1
      // Acks still due go with the connection; one already overdue was lost while it was up.
      const now = Date.now()
      for (const sentAt of this.#pending.values()) {
        if (now - sentAt > ACK_DEADLINE_MS) this.#lose()
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
    for (const [seq, sentAt] of this.#pending) {
      if (now - sentAt <= ACK_DEADLINE_MS) continue
      this.#pending.delete(seq)
      this.#lose()
    }
  }

  leave (): void {
    this.#leaving = true
    this.stopEmitting()
    this.socket.disconnect()
  }

  #lose (): void {
    this.lost++
    this.tally.lost++
  }

  #emit (): void {
    const seq = ++this.#seq
    const payload = `${this.id}:${seq}`
    this.#pending.set(seq, Date.now())
    this.tally.emits++
    this.socket.emit('ack', payload, (echo: unknown) => {
      const sentAt = this.#pending.get(seq)
      if (sentAt === undefined) {
        this.tally.late++
        return
      }
      this.#pending.delete(seq)
      this.tally.acked++
      if (echo !== payload) this.tally.mismatched++
      this.tally.maxAckMs = Math.max(this.tally.maxAckMs, Date.now() - sentAt)
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
