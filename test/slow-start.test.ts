/**
 * Slow start (issue 12): a server that comes back up or joins ramps from a
 * tenth of its weight to all of it over `slowStart` ms, for every weighted
 * method; servers the gateway starts with do not ramp. The clock of a pick
 * is its `now`: the end-to-end test moves a fake `Date` (only Date; the
 * requests are real), the others pick at chosen times.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http, { type IncomingMessage } from 'node:http'
import { createGateway, type BalanceOption, type Gateway } from '../src/index.js'
import { SLOW_START_FLOOR } from '../src/balance/slow-start.js'
import type { Pool } from '../src/upstream/pool.js'
import type { UpstreamServer } from '../src/upstream/server.js'
import { eventually, gatewayServer, httpUpstream, watchForCrashes } from './helpers/servers.js'
import { namedNodes, request } from './helpers/balance.js'

watchForCrashes()

const A = 'http://127.0.0.1:5001'
const B = 'http://127.0.0.1:5002'
const WINDOW = 10_000
const SLICES = 10
const START = 1_700_000_000_000

/** The weight share slow start gives a server `elapsed` ms into its ramp. */
function rampFactor (elapsed: number): number {
  return SLOW_START_FLOOR + (1 - SLOW_START_FLOOR) * Math.min(1, elapsed / WINDOW)
}

/** A pool `app` of A and B with `slowStart` (none when 0), not attached to any server: only its picks are used. */
function poolOf (balance: BalanceOption, slowStart = WINDOW): { gateway: Gateway, pool: Pool, a: UpstreamServer, b: UpstreamServer } {
  const gateway = createGateway({ upstreams: { app: { servers: [A, B], balance, ...(slowStart > 0 ? { slowStart } : {}), maxFails: 1 } } })
  const pool = gateway.pool('app')
  return { gateway, pool, a: pool.find(A)!, b: pool.find(B)! }
}

const req = { url: '/', headers: {} } as IncomingMessage

/** `n` picks at `now`; each picked server keeps the session open (its `activeTunnels` grows), as WebSockets do. */
function pickSessions (pool: Pool, now: number, n: number): UpstreamServer[] {
  const picked: UpstreamServer[] = []
  for (let i = 0; i < n; i++) {
    const s = pool.pick({ req, clientAddress: '127.0.0.1', now })
    assert.ok(s !== undefined)
    s.activeTunnels++
    picked.push(s)
  }
  return picked
}

/** B's share of `n` picks at the middle of each tenth of the window from `from`, then of `n` picks after the window. */
function sharesOverWindow (pool: Pool, b: UpstreamServer, from: number, n = 40): { slices: number[], after: number } {
  const share = (now: number): number => pickSessions(pool, now, n).filter((s) => s === b).length / n
  const slices = Array.from({ length: SLICES }, (_, k) => share(from + (k + 0.5) * WINDOW / SLICES))
  return { slices, after: share(from + WINDOW + 1) }
}

/** Round-robin shares: B's share grows with its ramped weight (w/(1+w) of A and B at equal weights), then is half. */
function assertRoundRobinRamp ({ slices, after }: { slices: number[], after: number }): void {
  for (const [k, got] of slices.entries()) {
    const w = rampFactor((k + 0.5) * WINDOW / SLICES)
    assert.ok(Math.abs(got - w / (1 + w)) <= 0.06, `slice ${k}: B got ${got} of the picks, expected about ${(w / (1 + w)).toFixed(3)} (${slices.join(' ')})`)
  }
  assert.ok(slices[0]! <= 0.15, `B took ${slices[0]} of the first slice's picks`)
  assert.equal(after, 0.5)
}

test('slow start: a server marked up again gets a growing share of real requests over slowStart, then its full share', async (t) => {
  const [a, b] = await namedNodes(t, 2)
  t.mock.timers.enable({ apis: ['Date'], now: START })
  const { gateway, port } = await gatewayServer(t, { target: [a!.url, b!.url], slowStart: WINDOW, maxFails: 0 })
  const pool = gateway.pool('default')
  pool.markDown(b!.url)
  pool.markUp(b!.url)
  const share = async (n: number): Promise<number> => {
    let onB = 0
    for (let i = 0; i < n; i++) if ((await request(port, '/')).body === b!.name) onB++
    return onB / n
  }
  const slices: number[] = []
  t.mock.timers.tick(WINDOW / SLICES / 2)
  for (let k = 0; k < SLICES; k++) {
    slices.push(await share(40))
    t.mock.timers.tick(WINDOW / SLICES)
  }
  assertRoundRobinRamp({ slices, after: await share(40) })
})

test('slow start: servers the gateway starts with take their full share at once', async (t) => {
  const [a, b] = await namedNodes(t, 2)
  const { port } = await gatewayServer(t, { target: [a!.url, b!.url], slowStart: 60_000 })
  const names: string[] = []
  for (let i = 0; i < 20; i++) names.push((await request(port, '/')).body)
  assert.equal(names.filter((n) => n === b!.name).length, 10)
})

test('slow start: round-robin ramps a server marked up again, and without slowStart it takes half at once', () => {
  const ramped = poolOf('round-robin')
  ramped.pool.markDown(B)
  const at = Date.now()
  ramped.pool.markUp(B)
  assertRoundRobinRamp(sharesOverWindow(ramped.pool, ramped.b, at))

  const plain = poolOf('round-robin', 0)
  plain.pool.markDown(B)
  plain.pool.markUp(B)
  assert.equal(sharesOverWindow(plain.pool, plain.b, Date.now()).slices[0], 0.5)
})

test('slow start: a server added with pool.add ramps up', () => {
  const { pool } = poolOf('round-robin')
  const at = Date.now()
  const c = pool.add('http://127.0.0.1:5003')
  pool.remove(A)
  assertRoundRobinRamp(sharesOverWindow(pool, c, at))
})

test('slow start: pool.undrain ramps the server up; undrain of a server that was not draining changes nothing', () => {
  const { pool, b } = poolOf('round-robin')
  pool.drain(B, { timeout: 0 }).catch(() => {})
  const at = Date.now()
  pool.undrain(B)
  assertRoundRobinRamp(sharesOverWindow(pool, b, at))
  pool.undrain(B)
  assert.equal(sharesOverWindow(pool, b, Date.now()).slices[0], 0.5)
})

test('slow start: a server out on passive failures ramps from the end of failTimeout', () => {
  const { pool, b } = poolOf('round-robin')
  const failedAt = Date.now()
  pool.recordFailure(b, failedAt)
  // failTimeout 10 s: out until then (A takes everything), then ramping.
  assert.ok(pickSessions(pool, failedAt + 5_000, 10).every((s) => s !== b))
  assertRoundRobinRamp(sharesOverWindow(pool, b, failedAt + 10_000))
})

test('slow start: a server back from passive failures by a success ramps from then', () => {
  const { pool, b } = poolOf('round-robin')
  pool.recordFailure(b, Date.now())
  const at = Date.now()
  pool.recordSuccess(b)
  assertRoundRobinRamp(sharesOverWindow(pool, b, at))
})

for (const balance of ['least-conn', 'random-two'] as const) {
  test(`slow start: with ${balance}, a server back up holds at most its ramped share of the open sessions until the window is over`, () => {
    const check = (slowStart: number): { worst: number, final: number } => {
      const { pool, a, b } = poolOf(balance, slowStart)
      a.activeTunnels = 200
      pool.markDown(B)
      const at = Date.now()
      pool.markUp(B)
      let worst = 0
      for (let k = 0; k < SLICES; k++) {
        const now = at + (k + 0.5) * WINDOW / SLICES
        pickSessions(pool, now, 40)
        // Least connections per unit of weight: B is picked while its load is under its weight's share of A's.
        worst = Math.max(worst, b.activeTunnels - rampFactor(now - at) * a.activeTunnels)
      }
      pickSessions(pool, at + WINDOW + 1, 200)
      return { worst, final: b.activeTunnels / a.activeTunnels }
    }
    const ramped = check(WINDOW)
    assert.ok(ramped.worst <= 1, `B held ${ramped.worst} sessions more than its ramped share`)
    assert.ok(Math.abs(ramped.final - 1) <= 0.05, `after the window B holds ${ramped.final} of A's sessions`)
    // Without slow start the server back up takes every new session until it has as many as A (the storm slow start prevents).
    assert.ok(check(0).worst > 20, 'the check cannot tell a ramp from none')
  })
}

test('slow start: a server health checks bring back up starts at a tenth of its weight', async (t) => {
  let healthy = true
  const answer = (res: http.ServerResponse, name: string): void => { res.writeHead(healthy || name === 'a' ? 200 : 500).end(name) }
  const a = await httpUpstream(t, (_req, res) => answer(res, 'a'))
  const b = await httpUpstream(t, (_req, res) => answer(res, 'b'))
  const { gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [a.url, b.url], slowStart: 60_000, health: { type: 'http', interval: 100, timeout: 100, fall: 1, rise: 1 } } },
  })
  const states: string[] = []
  gateway.on('upstream:down', (e) => states.push(`down ${e.server}`))
  gateway.on('upstream:up', (e) => states.push(`up ${e.server}`))
  healthy = false
  assert.ok(await eventually(() => states.includes(`down ${b.url}`)), 'B never went down')
  healthy = true
  assert.ok(await eventually(() => states.includes(`up ${b.url}`)), 'B never came back up')
  const pool = gateway.pool('app')
  const picked = pickSessions(pool, Date.now(), 40).filter((s) => s.url === b.url).length
  // A tenth of A's weight, a few ms into a minute's ramp: about 4 of 44 picks, never a half.
  assert.ok(picked <= 6, `B took ${picked} of 40 picks right after it came back`)
})
