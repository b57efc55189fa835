/**
 * WebSocket workloads: small-message echo, 64 KiB echo, and open+close loops.
 *
 * Echo loops are callback-driven (no promise per message) because the client
 * shares the two cores with the proxy and the upstream: the cheaper the client,
 * the more of the machine is left to the thing being measured.
 */
import { randomBytes } from 'node:crypto'
import WebSocket from 'ws'
import { PEAK_RSS_GOAL_MB, type LoadWorkload, type Limits, type Session } from './types.js'
import { sleep, waitUntil } from './wait.js'

const OPEN_TIMEOUT_MS = 5_000
const CLOSE_TIMEOUT_MS = 2_000
/** How long stop() lets in-flight messages come back before closing. */
const DRAIN_MS = 500

export function wsUrl (port: number): string {
  return `ws://127.0.0.1:${port}/ws`
}

/** Opens one WebSocket; rejects on error, non-101 answer or timeout. */
export function openWs (url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: OPEN_TIMEOUT_MS })
    const fail = (err: Error): void => { ws.terminate(); reject(err) }
    ws.once('open', () => { ws.off('error', fail); resolve(ws) })
    ws.once('error', fail)
    ws.once('unexpected-response', (_req, res) => fail(new Error(`upgrade answered ${res.statusCode}`)))
  })
}

/** Closes with the close handshake; terminates if the peer does not finish it in time. */
export function closeWs (ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => { ws.terminate() }, CLOSE_TIMEOUT_MS)
    ws.once('close', () => { clearTimeout(timer); resolve() })
    ws.on('error', () => {})
    if (ws.readyState === WebSocket.OPEN) ws.close()
    else ws.terminate()
  })
}

/** Opens `count` WebSockets, at most `batch` handshakes at a time. */
export async function openMany (url: string, count: number, batch: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = []
  try {
    for (let i = 0; i < count; i += batch) {
      const n = Math.min(batch, count - i)
      sockets.push(...await Promise.all(Array.from({ length: n }, () => openWs(url))))
    }
  } catch (err) {
    sockets.forEach((ws) => ws.terminate())
    throw err
  }
  return sockets
}

/** `connections` sockets, each sending the next `size`-byte message when the echo of the last one arrives. */
async function startEcho (port: number, connections: number, size: number, limits: Limits): Promise<Session> {
  const sockets = await openMany(wsUrl(port), connections, 50)
  const payload = randomBytes(size)
  let ops = 0
  let errors = 0
  let stopped = false
  let inFlight = 0
  const hardStop = setTimeout(() => { stopped = true }, limits.maxMs)

  for (const ws of sockets) {
    ws.on('message', () => {
      ops++
      inFlight--
      if (!stopped && ops < limits.maxOps) {
        inFlight++
        ws.send(payload)
      }
    })
    ws.on('error', () => { errors++ })
    ws.on('close', () => { if (!stopped) errors++ })
    inFlight++
    ws.send(payload)
  }

  return {
    get ops () { return ops },
    get errors () { return errors },
    async stop () {
      stopped = true
      clearTimeout(hardStop)
      await waitUntil(() => inFlight === 0, DRAIN_MS)
      await Promise.all(sockets.map(closeWs))
    },
  }
}

/** `concurrency` loops, each opening a WebSocket and closing it again (full close handshake). */
async function startHandshakes (port: number, concurrency: number, limits: Limits): Promise<Session> {
  const url = wsUrl(port)
  let ops = 0
  let errors = 0
  const state = { stopped: false }
  const deadline = Date.now() + limits.maxMs

  const loop = async (): Promise<void> => {
    while (!state.stopped && ops < limits.maxOps && Date.now() < deadline) {
      try {
        const ws = await openWs(url)
        await closeWs(ws)
        ops++
      } catch {
        errors++
        // Don't spin on a target that refuses everything.
        await sleep(20)
      }
    }
  }
  const loops = Array.from({ length: concurrency }, loop)

  return {
    get ops () { return ops },
    get errors () { return errors },
    async stop () {
      state.stopped = true
      await Promise.all(loops)
    },
  }
}

export const wsEcho: LoadWorkload = {
  kind: 'load',
  name: 'ws-echo',
  title: 'WebSocket echo, 50 connections, 64-byte messages, one in flight each',
  unit: 'round trips/s',
  // Goal beyond the target: 1.6x nginx.
  goals: { vsNodePeers: 1, peakRssMb: PEAK_RSS_GOAL_MB },
  limits: { maxOps: 5_000_000, maxMs: 60_000 },
  start: (port, limits) => startEcho(port, 50, 64, limits),
}

export const wsBulk: LoadWorkload = {
  kind: 'load',
  name: 'ws-bulk',
  title: 'WebSocket echo, 4 connections, 64 KiB messages, one in flight each',
  unit: 'MB/s',
  bytesPerOp: 64 * 1024,
  goals: { vsNodePeers: 1, vsNginx: 1, peakRssMb: PEAK_RSS_GOAL_MB },
  limits: { maxOps: 1_000_000, maxMs: 60_000 },
  start: (port, limits) => startEcho(port, 4, 64 * 1024, limits),
}

export const wsHandshake: LoadWorkload = {
  kind: 'load',
  name: 'ws-handshake',
  title: 'WebSocket open + close, 20 loops',
  unit: 'handshakes/s',
  // Goal beyond the target: 3x nginx.
  goals: { vsNodePeers: 0.8, peakRssMb: PEAK_RSS_GOAL_MB },
  // Each handshake uses an ephemeral port on both hops; the cap keeps a long run clear of port exhaustion.
  limits: { maxOps: 100_000, maxMs: 60_000 },
  start: (port, limits) => startHandshakes(port, 20, limits),
}
