/** Socket.IO emit-with-ack loops, over long-polling only and over WebSocket only. */
import { Agent, type ClientRequestArgs } from 'node:http'
import type { Duplex } from 'node:stream'
import { io, type Socket } from 'socket.io-client'
import { PEAK_RSS_GOAL_MB, type LoadWorkload, type Limits, type Session } from './types.js'
import { sleep, waitUntil } from './wait.js'

const CLIENTS = 10
const CONNECT_TIMEOUT_MS = 5_000
const ACK_TIMEOUT_MS = 5_000
const DRAIN_MS = 500
const CLOSE_GRACE_MS = 100
const PAYLOAD = 'x'.repeat(64)

/**
 * A keep-alive agent that remembers every connection it made. Node's
 * Agent.destroy() misses requests issued while the engines shut down (the
 * polling close packet is such a request), so stop() destroys them all itself.
 */
export class TrackingAgent extends Agent {
  readonly #all = new Set<Duplex>()

  override createConnection (options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const socket = super.createConnection(options, callback)
    if (socket) {
      this.#all.add(socket)
      socket.once('close', () => this.#all.delete(socket))
    }
    return socket
  }

  /** Connections made and not closed yet. */
  get size (): number { return this.#all.size }

  destroyAll (): void {
    this.destroy()
    for (const socket of this.#all) socket.destroy()
    this.#all.clear()
  }
}

function connect (port: number, transport: 'polling' | 'websocket', agent: TrackingAgent): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = io(`http://127.0.0.1:${port}`, {
      transports: [transport],
      forceNew: true,
      reconnection: false,
      timeout: CONNECT_TIMEOUT_MS,
      // Without an agent the Node polling transport opens a new connection per request
      // (Connection: close); browsers keep their connections alive, so the bench does too.
      agent: agent as unknown as string,
      // A client left behind by a failed window must not keep the bench process alive.
      autoUnref: true,
    })
    socket.once('connect', () => { socket.off('connect_error'); resolve(socket) })
    socket.once('connect_error', (err) => { socket.disconnect(); reject(err) })
  })
}

async function startAcks (port: number, transport: 'polling' | 'websocket', limits: Limits): Promise<Session> {
  const agent = new TrackingAgent({ keepAlive: true })
  const sockets: Socket[] = []
  try {
    for (let i = 0; i < CLIENTS; i++) sockets.push(await connect(port, transport, agent))
  } catch (err) {
    sockets.forEach((socket) => socket.disconnect())
    agent.destroyAll()
    throw err
  }
  let ops = 0
  let errors = 0
  let stopped = false
  let inFlight = 0
  const hardStop = setTimeout(() => { stopped = true }, limits.maxMs)

  const emit = (socket: Socket): void => {
    if (stopped || ops >= limits.maxOps || !socket.connected) return
    inFlight++
    socket.timeout(ACK_TIMEOUT_MS).emit('ack', PAYLOAD, (err: Error | null) => {
      inFlight--
      if (err) errors++
      else ops++
      emit(socket)
    })
  }
  for (const socket of sockets) {
    socket.on('disconnect', () => { if (!stopped) errors++ })
    emit(socket)
  }

  return {
    get ops () { return ops },
    get errors () { return errors },
    async stop () {
      stopped = true
      clearTimeout(hardStop)
      await waitUntil(() => inFlight === 0, DRAIN_MS)
      sockets.forEach((socket) => socket.disconnect())
      // Give the close packets a moment to reach the server, then drop every connection.
      await sleep(CLOSE_GRACE_MS)
      agent.destroyAll()
    },
  }
}

export const sioPolling: LoadWorkload = {
  kind: 'load',
  name: 'sio-polling',
  title: `Socket.IO emit + ack over long-polling, ${CLIENTS} clients, one in flight each`,
  unit: 'acks/s',
  goals: { vsNginx: 2.5, vsNodePeers: 1, peakRssMb: PEAK_RSS_GOAL_MB },
  limits: { maxOps: 2_000_000, maxMs: 60_000 },
  start: (port, limits) => startAcks(port, 'polling', limits),
}

export const sioWebsocket: LoadWorkload = {
  kind: 'load',
  name: 'sio-websocket',
  title: `Socket.IO emit + ack over WebSocket, ${CLIENTS} clients, one in flight each`,
  unit: 'acks/s',
  // No CPU target was set for this one (it was a tie with the Node peers); memory still counts.
  goals: { peakRssMb: PEAK_RSS_GOAL_MB },
  limits: { maxOps: 2_000_000, maxMs: 60_000 },
  start: (port, limits) => startAcks(port, 'websocket', limits),
}
