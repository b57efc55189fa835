import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import type { Gateway } from '../src/index.js'
import { nextDelay, JITTER_FRACTION, MAX_JITTER_MS } from '../src/health.js'
import { gatewayServer, httpUpstream, rawUpstream, refusedUrl, socketIoUpstream, watchForCrashes } from './helpers/servers.js'
import { landOn, startNode } from './helpers/cluster.js'

watchForCrashes()

// Rounds and check timeouts run on node:test's fake clock (setTimeout, setInterval and Date), so no test waits for an
// interval; the checks themselves are real connections to real upstreams on loopback. After moving the clock a test
// yields setImmediate turns (never faked here) until the I/O the moved timers started has settled.

interface StateEvent { kind: 'down' | 'up', pool: string, server: string, reason: string, at: number }

/** Every upstream:down / upstream:up of `gateway`, in order, stamped with the (fake) clock. */
function stateEvents (gateway: Gateway): StateEvent[] {
  const events: StateEvent[] = []
  gateway.on('upstream:down', (e) => events.push({ kind: 'down', ...e, at: Date.now() }))
  gateway.on('upstream:up', (e) => events.push({ kind: 'up', ...e, at: Date.now() }))
  return events
}

/** Yield event-loop turns until `predicate` holds; fails after `limitMs` of real time (performance.now is never faked). */
async function settle (predicate: () => boolean, what: string, limitMs = 5_000): Promise<void> {
  const deadline = performance.now() + limitMs
  while (!predicate()) {
    if (performance.now() > deadline) assert.fail(`${what}: not within ${limitMs} ms`)
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/**
 * The fake clock of one test, for checks every `interval` ms. A round's next one is due `interval` to `span` ms after
 * it (see nextDelay), and a timer run by a tick sees the clock at the tick's end, so each `round()`, a tick of `span`,
 * runs exactly one round of every pool. Enable it before creating the gateway, whose first rounds are scheduled at once.
 * End the test with its checks settled: a fake timer still pending when node:test resets the clock keeps its queue
 * position, and clearing it later, under the next test's clock, would drop one of that clock's timers.
 */
function healthClock (t: TestContext, interval: number) {
  const span = interval + Math.min(interval * JITTER_FRACTION, MAX_JITTER_MS)
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: Date.now() })
  const clock = {
    span,
    /** Move the clock by `ms`, then wait until `settled()` holds. */
    async advance (ms: number, settled: () => boolean, what: string): Promise<void> {
      t.mock.timers.tick(ms)
      await settle(settled, what)
    },
    /** Run the next round, then wait until `settled()` holds. */
    round (settled: () => boolean, what = 'the round\'s checks'): Promise<void> {
      return clock.advance(span, settled, what)
    },
  }
  return clock
}

/** Whether every server of `pool` has recorded a check at the clock's present time, i.e. in the round just run. */
function checkedNow (gateway: Gateway, pool: string): boolean {
  return gateway.status().pools[pool]!.servers.every((s) => s.lastCheck?.at === Date.now())
}

/**
 * Run rounds of `pool` (each waited for with checkedNow) until `events` holds a `kind` event for `server`, at most
 * `limit` rounds; resolves with that event and the number of rounds it took.
 */
async function roundsUntil (clock: ReturnType<typeof healthClock>, gateway: Gateway, pool: string, events: StateEvent[], kind: 'down' | 'up', server: string, limit = 10): Promise<StateEvent & { rounds: number }> {
  const seen = events.length
  for (let rounds = 1; rounds <= limit; rounds++) {
    await clock.round(() => checkedNow(gateway, pool))
    const event = events.slice(seen).find((e) => e.kind === kind && e.server === server)
    if (event !== undefined) return { ...event, rounds }
  }
  assert.fail(`no upstream:${kind} for ${server} within ${limit} rounds`)
}

/** An HTTP upstream answering the health path with whatever `answer()` says now, counting what it served. */
async function switchableUpstream (t: TestContext) {
  const state = { status: 200, body: 'ok', served: [] as number[] }
  const up = await httpUpstream(t, (req, res) => {
    if (req.url !== '/healthz') {
      res.writeHead(404).end()
      return
    }
    state.served.push(state.status)
    res.writeHead(state.status, { 'content-type': 'text/plain' }).end(state.body)
  })
  return { ...up, state }
}

/** The status of a plain GET on a connection of its own. */
function getStatus (url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    }).on('error', reject)
  })
}

test('health: the jitter stays within a tenth of the interval (at most 1 s)', () => {
  assert.equal(nextDelay(1_000, () => 0), 1_000)
  assert.ok(nextDelay(1_000, () => 0.9999) < 1_000 * (1 + JITTER_FRACTION))
  assert.ok(nextDelay(60_000, () => 0.9999) < 61_000)
  const delays = new Set(Array.from({ length: 20 }, () => nextDelay(3_000)))
  assert.ok(delays.size > 1, 'every round had the same delay: pools would probe in lockstep')
})

test('health: an http check takes a server down after fall failures and up after rise successes', async (t) => {
  const up = await switchableUpstream(t)
  const clock = healthClock(t, 100)
  const { gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [up.url], health: { type: 'http', path: '/healthz', interval: 100, timeout: 100, fall: 3, rise: 2 } } },
  })
  const events = stateEvents(gateway)
  const checked = () => checkedNow(gateway, 'app')
  await clock.round(checked)
  await clock.round(checked)
  assert.equal(up.state.served.length, 2, 'the checks did not reach the upstream once per round')
  assert.equal(gateway.status().pools.app!.servers[0]!.lastCheck?.ok, true)

  up.state.status = 500
  const down = await roundsUntil(clock, gateway, 'app', events, 'down', up.url)
  assert.equal(down.reason, 'status 500')
  assert.equal(up.state.served.filter((s) => s === 500).length, 3, 'down after exactly `fall` failed checks')
  const snap = gateway.status().pools.app!.servers[0]!
  assert.equal(snap.state, 'down')
  assert.equal(snap.reason, 'status 500')
  assert.equal(snap.lastCheck?.ok, false)
  assert.equal(typeof snap.lastCheck?.ms, 'number')

  up.state.status = 204
  const served = up.state.served.length
  const back = await roundsUntil(clock, gateway, 'app', events, 'up', up.url)
  assert.equal(back.reason, 'passed 2 checks')
  assert.equal(up.state.served.length - served, 2, 'up after exactly `rise` passed checks')
  assert.equal(gateway.status().pools.app!.servers[0]!.state, 'up')
})

test('health: an http check whose body lacks expectBody counts as failed', async (t) => {
  const up = await switchableUpstream(t)
  up.state.body = 'degraded'
  const clock = healthClock(t, 100)
  const { gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [up.url], health: { type: 'http', path: '/healthz', interval: 100, timeout: 100, fall: 1, expectBody: /^ok$/ } } },
  })
  const down = await roundsUntil(clock, gateway, 'app', stateEvents(gateway), 'down', up.url)
  assert.equal(down.reason, 'body mismatch')
})

test('health: a refused tcp check reports ECONNREFUSED as the reason', async (t) => {
  const url = await refusedUrl()
  const clock = healthClock(t, 100)
  const { gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [url], health: { interval: 100, timeout: 100, fall: 1 } } },
  })
  const down = await roundsUntil(clock, gateway, 'app', stateEvents(gateway), 'down', url)
  assert.deepEqual({ pool: down.pool, reason: down.reason }, { pool: 'app', reason: 'ECONNREFUSED' })
})

test('health: a port that accepts but whose Socket.IO never answers is up for tcp and down for engine.io', async (t) => {
  const wedged = await rawUpstream(t, () => { /* accepts, reads nothing, answers nothing */ })
  const health = { interval: 100, timeout: 80, fall: 2 }
  const clock = healthClock(t, health.interval)
  const { gateway } = await gatewayServer(t, {
    upstreams: {
      tcp: { servers: [wedged.url], health: { ...health, type: 'tcp' } },
      eio: { servers: [wedged.url], health: { ...health, type: 'engine.io' } },
    },
    routes: [{ path: '/tcp', upstream: 'tcp' }, { path: '/eio', upstream: 'eio' }],
  })
  const events = stateEvents(gateway)
  // In each round the tcp check passes as soon as it connects; the engine.io check waits out its timeout.
  const round = async (): Promise<void> => {
    await clock.advance(clock.span - health.timeout, () => checkedNow(gateway, 'tcp'), 'the tcp check')
    await clock.advance(health.timeout, () => checkedNow(gateway, 'eio'), 'the engine.io check timing out')
  }
  let rounds = 0
  while (events.length === 0) {
    assert.ok(++rounds <= 10, 'no server went down within 10 rounds')
    await round()
  }
  const down = events[0]!
  assert.deepEqual({ kind: down.kind, server: down.server }, { kind: 'down', server: wedged.url })
  assert.deepEqual({ pool: down.pool, reason: down.reason }, { pool: 'eio', reason: 'timeout' })
  const { tcp, eio } = gateway.status().pools
  assert.equal(tcp!.servers[0]!.state, 'up')
  assert.equal(tcp!.servers[0]!.lastCheck?.ok, true)
  assert.equal(eio!.servers[0]!.state, 'down')
  // Give the tcp pool as many more rounds as it took the engine.io pool to fall: it stays up.
  for (let i = 0; i < rounds; i++) await round()
  assert.equal(gateway.status().pools.tcp!.servers[0]!.state, 'up')
  assert.deepEqual(events.filter((e) => e.pool === 'tcp'), [])
})

test('health: an engine.io check that gets no open packet says so', async (t) => {
  const up = await httpUpstream(t, (_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }).end('hello') })
  const clock = healthClock(t, 100)
  const { gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [up.url], health: { type: 'engine.io', interval: 100, timeout: 100, fall: 1 } } },
  })
  const down = await roundsUntil(clock, gateway, 'app', stateEvents(gateway), 'down', up.url)
  assert.equal(down.reason, 'no open packet')
})

test('health: an engine.io check passes against a real Socket.IO node and closes the session it opened', async (t) => {
  const node = await socketIoUpstream(t)
  let connections = 0
  node.io.on('connection', () => { connections++ })
  let open = 0
  node.server.on('connection', (socket) => {
    open++
    socket.on('close', () => { open-- })
  })
  const clock = healthClock(t, 100)
  const { gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [node.url], health: { type: 'engine.io', interval: 100, timeout: 100, fall: 1 } } },
  })
  const checks = new Set<number>()
  for (let i = 0; i < 4; i++) {
    await clock.round(() => checkedNow(gateway, 'app'))
    const last = gateway.status().pools.app!.servers[0]!.lastCheck
    if (last?.ok === true) checks.add(last.at)
    // Without the close packet every check would leave a session behind for engine.io's ping timeout (45 s).
    await settle(() => node.io.engine.clientsCount === 0, `check ${i + 1} left its session open`)
    // The close is sent after the check has passed; it must be over before the next tick, which would time it out.
    await settle(() => open === 0, `the close request of check ${i + 1} did not finish`)
  }
  assert.equal(checks.size, 4, 'four checks did not pass')
  assert.equal(connections, 0, 'a check opened a Socket.IO connection')
})

test('health: checks stop on gateway.close()', async (t) => {
  const up = await switchableUpstream(t)
  let connections = 0
  up.server.on('connection', () => { connections++ })
  const clock = healthClock(t, 100)
  const { gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [up.url], health: { type: 'http', path: '/healthz', interval: 100, timeout: 50 } } },
  })
  await clock.round(() => checkedNow(gateway, 'app'))
  await clock.round(() => checkedNow(gateway, 'app'))
  assert.equal(up.state.served.length, 2)
  await gateway.close()
  const served = up.state.served.length
  const accepted = connections
  t.mock.timers.tick(4 * clock.span)
  // A check connects the moment its round runs and the upstream accepts connections in order, so once a
  // connection opened now is answered, a check's connection would already have been counted.
  assert.equal(await getStatus(`${up.url}/after-close`), 404)
  assert.equal(connections - accepted, 1, 'a check connected after close()')
  assert.equal(up.state.served.length, served, 'a check ran after close()')
})

test('health: check timers never keep the process alive', async () => {
  // A gateway with checks and nothing else: the process must exit on its own.
  const script = "import { createGateway } from './src/index.ts'\n" +
    "createGateway({ upstreams: { app: { servers: ['http://127.0.0.1:9'], health: { interval: 100, timeout: 50 } } } })\n"
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: process.cwd(), stdio: 'pipe' })
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const killer = setTimeout(() => child.kill(), 10_000)
  const [code, signal] = await once(child, 'exit') as [number | null, string | null]
  clearTimeout(killer)
  assert.equal(signal, null, 'the process had to be killed: a check timer kept it alive')
  assert.equal(code, 0, stderr)
})

test('health: one of three Socket.IO nodes killed under a stream of clients is found down, skipped, and used again once restarted', async (t) => {
  const nodes = [await startNode(t, 'a'), await startNode(t, 'b'), await startNode(t, 'c')]
  const victim = nodes[2]!
  const health = { type: 'engine.io' as const, interval: 150, timeout: 100, fall: 2, rise: 2 }
  const clock = healthClock(t, health.interval)
  const { gateway, url } = await gatewayServer(t, {
    // maxFails: 0 leaves passive health out, so it is the active checks that find the dead node.
    upstreams: { io: { servers: nodes.map((n) => n.url), health, maxFails: 0 } },
  })
  const events = stateEvents(gateway)
  const serverOf = () => gateway.pool('io').find(victim.url)!
  const landed: Array<{ node: string, afterDown: boolean }> = []
  const failed: unknown[] = []
  let downSeen = false
  const run = { stop: false }
  // A steady, bounded stream: two clients at a time, each connecting, echoing and leaving.
  const stream = async (limit: number): Promise<void> => {
    for (let i = 0; i < limit && !run.stop; i++) {
      try {
        landed.push({ node: await landOn(url), afterDown: downSeen })
      } catch (err) {
        failed.push(err)
      }
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  await clock.round(() => checkedNow(gateway, 'io'))
  assert.ok(gateway.status().pools.io!.servers.every((s) => s.lastCheck?.ok === true), 'a live node failed its check')
  await Promise.all([stream(6), stream(6)])
  assert.deepEqual(new Set(landed.map((l) => l.node)), new Set(['a', 'b', 'c']))

  const running = Promise.all([stream(400), stream(400)])
  await victim.kill()
  const killedAt = Date.now()
  // Every round checks the victim once, and each check after the kill fails: it must go down on the `fall`-th, no later.
  const down = await roundsUntil(clock, gateway, 'io', events, 'down', victim.url)
  downSeen = true
  const failuresAtDown = serverOf().failures
  assert.equal(down.reason, 'ECONNREFUSED')
  assert.ok(down.rounds <= health.fall, `down only after ${down.rounds} failed checks (fall is ${health.fall})`)
  // Rounds are at most interval × 1.1 apart (see the jitter test), so that is within fall × interval × 1.1 + timeout.
  const bound = health.fall * health.interval * (1 + JITTER_FRACTION) + health.timeout
  assert.ok(down.at - killedAt <= bound, `down after ${down.at - killedAt} ms; expected about ${bound} ms`)

  const before = landed.length
  await settle(() => landed.length >= before + 20, 'the stream stalled', 15_000)
  assert.equal(serverOf().failures, failuresAtDown, 'a client was sent to the node after it was reported down')
  assert.deepEqual(landed.filter((l) => l.afterDown && l.node === 'c'), [])

  await victim.start()
  const up = await roundsUntil(clock, gateway, 'io', events, 'up', victim.url)
  assert.equal(up.reason, `passed ${health.rise} checks`)
  const atUp = landed.length
  await settle(() => landed.slice(atUp).some((l) => l.node === 'c'), 'the restarted node got no new client', 15_000)
  run.stop = true
  await running
  assert.deepEqual(failed, [], 'a client failed although failover had healthy nodes')
})
