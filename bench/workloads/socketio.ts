/** Socket.IO emit-with-ack loops, over long-polling only and over WebSocket only. */
import { io, type Socket } from 'socket.io-client'
import type { LoadWorkload, Limits, Session } from './types.js'
import { waitUntil } from './wait.js'

const CLIENTS = 10
const CONNECT_TIMEOUT_MS = 5_000
const ACK_TIMEOUT_MS = 5_000
const DRAIN_MS = 500
const PAYLOAD = 'x'.repeat(64)

function connect (port: number, transport: 'polling' | 'websocket'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = io(`http://127.0.0.1:${port}`, {
      transports: [transport],
      forceNew: true,
      reconnection: false,
      timeout: CONNECT_TIMEOUT_MS,
    })
    socket.once('connect', () => { socket.off('connect_error'); resolve(socket) })
    socket.once('connect_error', (err) => { socket.disconnect(); reject(err) })
  })
}

async function startAcks (port: number, transport: 'polling' | 'websocket', limits: Limits): Promise<Session> {
  const sockets: Socket[] = []
  try {
    for (let i = 0; i < CLIENTS; i++) sockets.push(await connect(port, transport))
  } catch (err) {
    sockets.forEach((socket) => socket.disconnect())
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
    },
  }
}

export const sioPolling: LoadWorkload = {
  kind: 'load',
  name: 'sio-polling',
  title: `Socket.IO emit + ack over long-polling, ${CLIENTS} clients, one in flight each`,
  unit: 'acks/s',
  cpuBudget: 10,
  limits: { maxOps: 2_000_000, maxMs: 60_000 },
  start: (port, limits) => startAcks(port, 'polling', limits),
}

export const sioWebsocket: LoadWorkload = {
  kind: 'load',
  name: 'sio-websocket',
  title: `Socket.IO emit + ack over WebSocket, ${CLIENTS} clients, one in flight each`,
  unit: 'acks/s',
  // No budget was set for this one; the small-message WebSocket budget is the nearest guide.
  cpuBudget: Number.NaN,
  limits: { maxOps: 2_000_000, maxMs: 60_000 },
  start: (port, limits) => startAcks(port, 'websocket', limits),
}
