import http, { type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { SockgateError, UpstreamTimeoutError } from './errors.js'
import { sidFromOpenPacket } from './balance/sticky.js'
import { connectUpstream } from './upstream/connect.js'
import type { NormalizedHealth } from './options.js'
import type { Pool } from './upstream/pool.js'
import type { UpstreamServer } from './upstream/server.js'
import type { UpstreamTlsOptions } from './types.js'

/**
 * Each round waits `interval` plus up to this fraction of it (at most
 * {@link MAX_JITTER_MS}), so pools started together drift apart instead of
 * probing in lockstep.
 */
export const JITTER_FRACTION = 0.1
/** Upper bound of the jitter added to one round, in ms. */
export const MAX_JITTER_MS = 1_000
/** Bytes of a check's response body read for `expectBody` and the engine.io open packet. */
const MAX_BODY = 65_536

/** Outcome of one check of one server. */
export interface ProbeResult {
  ok: boolean
  /** Why it failed (`'ECONNREFUSED'`, `'status 500'`, `'timeout'`, `'no open packet'`), or `'ok'`. */
  reason: string
  /** How long the check took, in ms. */
  ms: number
}

/** Told when active checks take a server down or bring it back. */
export type HealthListener = (pool: Pool, server: UpstreamServer, up: boolean, reason: string) => void

/** Short, stable text for an error of a check: the errno code when there is one. */
export function failureReason (err: unknown): string {
  if (err instanceof UpstreamTimeoutError) return 'timeout'
  const e = err as { code?: unknown, cause?: { code?: unknown, message?: unknown } } | undefined
  if (typeof e?.cause?.code === 'string') return e.cause.code
  if (err instanceof SockgateError) return typeof e?.cause?.message === 'string' ? e.cause.message : err.code
  if (typeof e?.code === 'string') return e.code
  return err instanceof Error ? err.message : String(err)
}

/** The delay before the next round of a pool: `interval` plus jitter. */
export function nextDelay (interval: number, random: () => number = Math.random): number {
  return interval + Math.floor(random() * Math.min(interval * JITTER_FRACTION, MAX_JITTER_MS))
}

/** Append the engine.io polling handshake query to a probe path. */
export function engineIoProbePath (path: string): string {
  return `${path}${path.includes('?') ? '&' : '?'}EIO=4&transport=polling`
}

/**
 * Check one server once, the way `health.type` says: `tcp` connects;
 * `http` asks for `path` and wants a status in `expectStatus` (and
 * `expectBody` in the body); `engine.io` performs a polling handshake and
 * wants an open packet with a `sid` (the session is closed again right
 * away). Never rejects; everything it opens is closed by the time it
 * resolves, and it resolves within `health.timeout` (plus a tick).
 */
export function probeServer (server: UpstreamServer, health: NormalizedHealth, tls: UpstreamTlsOptions | null): Promise<ProbeResult> {
  const started = performance.now()
  const result = (ok: boolean, reason: string): ProbeResult => ({ ok, reason, ms: Math.round(performance.now() - started) })
  return new Promise<ProbeResult>((resolve) => {
    let socket: Socket | undefined
    let req: http.ClientRequest | undefined
    let settled = false
    const finish = (ok: boolean, reason: string): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req?.destroy()
      socket?.destroy()
      resolve(result(ok, reason))
    }
    const timer = setTimeout(() => finish(false, 'timeout'), health.timeout)
    timer.unref()
    connectUpstream(server, health.timeout, tls).then((s) => {
      socket = s
      if (settled) return s.destroy()
      if (health.type === 'tcp') return finish(true, 'ok')
      s.on('error', () => {})
      const path = health.type === 'engine.io' ? engineIoProbePath(health.path) : health.path
      req = request(server, s, 'GET', path)
      req.on('error', (err) => finish(false, failureReason(err)))
      req.on('response', (res) => {
        checkResponse(res, health).then(({ ok, reason, sid }) => {
          finish(ok, reason)
          if (sid !== undefined) closeEngineIoSession(server, health, tls, sid)
        }, (err: unknown) => finish(false, failureReason(err)))
      })
      req.end()
    }, (err: unknown) => finish(false, failureReason(err)))
  })
}

function request (server: UpstreamServer, socket: Socket, method: string, path: string, body?: string): http.ClientRequest {
  const headers: Record<string, string> = {
    host: server.hostHeader,
    'user-agent': 'sockgate-health-check',
    accept: '*/*',
    connection: 'close',
  }
  if (body !== undefined) {
    headers['content-type'] = 'text/plain;charset=UTF-8'
    headers['content-length'] = String(Buffer.byteLength(body))
  }
  const req = http.request({ method, path, headers, setHost: false, createConnection: () => socket })
  if (body !== undefined) req.write(body)
  return req
}

/** Read the start of a body, up to `MAX_BODY` bytes. */
function readStart (res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (): void => resolve(Buffer.concat(chunks).toString('utf8'))
    res.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      size += chunk.length
      if (size >= MAX_BODY) {
        res.removeListener('end', done)
        res.destroy()
        done()
      }
    })
    res.once('end', done)
    res.once('error', reject)
  })
}

async function checkResponse (res: IncomingMessage, health: NormalizedHealth): Promise<{ ok: boolean, reason: string, sid?: string }> {
  const status = res.statusCode ?? 0
  if (health.type === 'engine.io') {
    if (status !== 200) return { ok: false, reason: `status ${status}` }
    const sid = sidFromOpenPacket(await readStart(res))
    return sid === undefined ? { ok: false, reason: 'no open packet' } : { ok: true, reason: 'ok', sid }
  }
  const [low, high] = health.expectStatus
  if (status < low || status > high) return { ok: false, reason: `status ${status}` }
  if (health.expectBody === null) return { ok: true, reason: 'ok' }
  const body = await readStart(res)
  const matches = typeof health.expectBody === 'string' ? body.includes(health.expectBody) : health.expectBody.test(body)
  return matches ? { ok: true, reason: 'ok' } : { ok: false, reason: 'body mismatch' }
}

/**
 * Close the session a check opened (an engine.io close packet, `1`), so
 * checks do not leave a session per round waiting for its ping timeout.
 * Best effort: failures are ignored, the session then times out upstream.
 */
function closeEngineIoSession (server: UpstreamServer, health: NormalizedHealth, tls: UpstreamTlsOptions | null, sid: string): void {
  connectUpstream(server, health.timeout, tls).then((socket) => {
    socket.on('error', () => {})
    const timer = setTimeout(() => socket.destroy(), health.timeout)
    timer.unref()
    const req = request(server, socket, 'POST', `${engineIoProbePath(health.path)}&sid=${encodeURIComponent(sid)}`, '1')
    const end = (): void => {
      clearTimeout(timer)
      socket.destroy()
    }
    req.on('error', end)
    req.on('response', (res) => {
      res.resume()
      res.once('end', end)
    })
    req.end()
  }, () => {})
}

/** Consecutive results of one server, for `rise` and `fall`. */
interface Streak {
  ok: number
  failed: number
  inFlight: boolean
}

/**
 * Active health checks of every pool that has `health` settings: one loop
 * per pool, each round probing all of the pool's current servers at once
 * (servers added or removed at run time are picked up on the next round).
 * A server goes down after `fall` consecutive failures and comes back after
 * `rise` consecutive successes. Timers are unref'd, so checks never keep the
 * process alive; `stop()` ends them.
 */
export class HealthChecker {
  private readonly timers = new Map<Pool, NodeJS.Timeout>()
  private readonly streaks = new WeakMap<UpstreamServer, Streak>()
  private stopped = false

  constructor (pools: Iterable<Pool>, private readonly onState: HealthListener) {
    for (const pool of pools) {
      const health = pool.spec.health
      // The first round comes after the jitter alone, so a new gateway learns the state quickly.
      if (health !== null) this.schedule(pool, health, nextDelay(health.interval) - health.interval)
    }
  }

  private schedule (pool: Pool, health: NormalizedHealth, delay: number): void {
    if (this.stopped) return
    const timer = setTimeout(() => {
      // The next round is timed from the start of this one: `timeout` never exceeds `interval`.
      this.schedule(pool, health, nextDelay(health.interval))
      this.round(pool, health)
    }, delay)
    timer.unref()
    this.timers.set(pool, timer)
  }

  private round (pool: Pool, health: NormalizedHealth): void {
    for (const server of pool.servers) {
      let streak = this.streaks.get(server)
      if (streak === undefined) {
        streak = { ok: 0, failed: 0, inFlight: false }
        this.streaks.set(server, streak)
      }
      if (streak.inFlight) continue
      streak.inFlight = true
      const s = streak
      probeServer(server, health, pool.spec.tls).then((result) => {
        s.inFlight = false
        if (!this.stopped) this.record(pool, server, health, s, result)
      }, () => { s.inFlight = false })
    }
  }

  private record (pool: Pool, server: UpstreamServer, health: NormalizedHealth, streak: Streak, result: ProbeResult): void {
    server.lastCheck = { at: Date.now(), ok: result.ok, ms: result.ms }
    if (result.ok) {
      streak.ok++
      streak.failed = 0
      if (server.healthDown && streak.ok >= health.rise) {
        server.healthDown = false
        server.healthReason = null
        // The checks just reached it: passive failures from the outage no longer keep it out.
        server.passiveUntil = 0
        server.recentFailures = []
        pool.rampUp(server)
        this.onState(pool, server, true, `passed ${streak.ok} check${streak.ok === 1 ? '' : 's'}`)
      }
      return
    }
    streak.failed++
    streak.ok = 0
    if (server.healthDown) {
      server.healthReason = result.reason
    } else if (streak.failed >= health.fall) {
      server.healthDown = true
      server.healthReason = result.reason
      this.onState(pool, server, false, result.reason)
    }
  }

  /** End every check loop; checks in flight finish but change nothing. */
  stop (): void {
    this.stopped = true
    for (const timer of this.timers.values()) clearTimeout(timer)
    this.timers.clear()
  }
}
