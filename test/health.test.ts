import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import type { Gateway } from '../src/index.js'
import { nextDelay, JITTER_FRACTION } from '../src/health.js'
import { eventually, gatewayServer, httpUpstream, rawUpstream, refusedUrl, watchForCrashes } from './helpers/servers.js'
import { landOn, sleep, startNode } from './helpers/cluster.js'

watchForCrashes()

interface StateEvent { kind: 'down' | 'up', pool: string, server: string, reason: string, at: number }

/** Every upstream:down / upstream:up of `gateway`, in order. */
function stateEvents (gateway: Gateway): StateEvent[] {
  const events: StateEvent[] = []
  gateway.on('upstream:down', (e) => events.push({ kind: 'down', ...e, at: Date.now() }))
  gateway.on('upstream:up', (e) => events.push({ kind: 'up', ...e, at: Date.now() }))
  return events
}

/** Resolves with the next `kind` event for `server` (rejects after `ms`). */
function nextState (gateway: Gateway, kind: 'down' | 'up', server: string, ms = 10_000): Promise<StateEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      gateway.off(`upstream:${kind}`, listener)
      reject(new Error(`no upstream:${kind} for ${server} within ${ms} ms`))
    }, ms)
    const listener = (e: { pool: string, server: string, reason: string }): void => {
      if (e.server !== server) return
      clearTimeout(timer)
      gateway.off(`upstream:${kind}`, listener)
      resolve({ kind, ...e, at: Date.now() })
    }
    gateway.on(`upstream:${kind}`, listener)
  })
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

test('health: the jitter stays within a tenth of the interval (at most 1 s)', () => {
  assert.equal(nextDelay(1_000, () => 0), 1_000)
  assert.ok(nextDelay(1_000, () => 0.9999) < 1_000 * (1 + JITTER_FRACTION))
  assert.ok(nextDelay(60_000, () => 0.9999) < 61_000)
  const delays = new Set(Array.from({ length: 20 }, () => nextDelay(3_000)))
  assert.ok(delays.size > 1, 'every round had the same delay: pools would probe in lockstep')
})

test('health: an http check takes a server down after fall failures and up after rise successes', async (t) => {
  const up = await switchableUpstream(t)
  const { gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [up.url], health: { type: 'http', path: '/healthz', interval: 100, timeout: 100, fall: 3, rise: 2 } } },
  })
  assert.ok(await eventually(() => up.state.served.length >= 2), 'no checks reached the upstream')
  assert.equal(gateway.status().pools.app!.servers[0]!.lastCheck?.ok, true)

  up.state.status = 500
  const down = await nextState(gateway, 'down', up.url)
  assert.equal(down.reason, 'status 500')
  assert.equal(up.state.served.filter((s) => s === 500).length, 3, 'down after exactly `fall` failed checks')
  const snap = gateway.status().pools.app!.servers[0]!
  assert.equal(snap.state, 'down')
  assert.equal(snap.reason, 'status 500')
  assert.equal(snap.lastCheck?.ok, false)
  assert.equal(typeof snap.lastCheck?.ms, 'number')

  up.state.status = 204
  const served = up.state.served.length
  const back = await nextState(gateway, 'up', up.url)
  assert.equal(back.reason, 'passed 2 checks')
  assert.equal(up.state.served.length - served, 2, 'up after exactly `rise` passed checks')
  assert.equal(gateway.status().pools.app!.servers[0]!.state, 'up')
})

test('health: an http check whose body lacks expectBody counts as failed', async (t) => {
  const up = await switchableUpstream(t)
  up.state.body = 'degraded'
  const { gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [up.url], health: { type: 'http', path: '/healthz', interval: 100, timeout: 100, fall: 1, expectBody: /^ok$/ } } },
  })
  const down = await nextState(gateway, 'down', up.url)
  assert.equal(down.reason, 'body mismatch')
})

test('health: a refused tcp check reports ECONNREFUSED as the reason', async (t) => {
  const url = await refusedUrl()
  const { gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [url], health: { interval: 100, timeout: 100, fall: 1 } } },
  })
  const down = await nextState(gateway, 'down', url)
  assert.deepEqual({ pool: down.pool, reason: down.reason }, { pool: 'app', reason: 'ECONNREFUSED' })
})

test('health: a port that accepts but whose Socket.IO never answers is up for tcp and down for engine.io', async (t) => {
  const wedged = await rawUpstream(t, () => { /* accepts, reads nothing, answers nothing */ })
  const health = { interval: 100, timeout: 80, fall: 2 }
  const { gateway } = await gatewayServer(t, {
    upstreams: {
      tcp: { servers: [wedged.url], health: { ...health, type: 'tcp' } },
      eio: { servers: [wedged.url], health: { ...health, type: 'engine.io' } },
    },
    routes: [{ path: '/tcp', upstream: 'tcp' }, { path: '/eio', upstream: 'eio' }],
  })
  const events = stateEvents(gateway)
  const down = await nextState(gateway, 'down', wedged.url)
  assert.deepEqual({ pool: down.pool, reason: down.reason }, { pool: 'eio', reason: 'timeout' })
  const { tcp, eio } = gateway.status().pools
  assert.equal(tcp!.servers[0]!.state, 'up')
  assert.equal(tcp!.servers[0]!.lastCheck?.ok, true)
  assert.equal(eio!.servers[0]!.state, 'down')
  // Give the tcp pool as many more rounds as it took the engine.io pool to fall: it stays up.
  await sleep(300)
  assert.equal(gateway.status().pools.tcp!.servers[0]!.state, 'up')
  assert.deepEqual(events.filter((e) => e.pool === 'tcp'), [])
})

test('health: an engine.io check that gets no open packet says so', async (t) => {
  const up = await httpUpstream(t, (_req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }).end('hello') })
  const { gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [up.url], health: { type: 'engine.io', interval: 100, timeout: 100, fall: 1 } } },
  })
  const down = await nextState(gateway, 'down', up.url)
  assert.equal(down.reason, 'no open packet')
})

test('health: an engine.io check passes against a real Socket.IO node and closes the session it opened', async (t) => {
  const node = await startNode(t, 'a')
  const { gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [node.url], health: { type: 'engine.io', interval: 100, timeout: 100, fall: 1 } } },
  })
  const checks = new Set<number>()
  assert.ok(await eventually(() => {
    const last = gateway.status().pools.app!.servers[0]!.lastCheck
    if (last?.ok === true) checks.add(last.at)
    return checks.size >= 4
  }), 'four checks did not pass')
  // Without the close packet every check would leave a session behind for engine.io's ping timeout (45 s).
  assert.ok(await eventually(() => node.sessions === 0), `${node.sessions} check sessions left open`)
  assert.equal(node.connections, 0, 'a check opened a Socket.IO connection')
})

test('health: checks stop on gateway.close()', async (t) => {
  const up = await switchableUpstream(t)
  const { gateway } = await gatewayServer(t, {
    upstreams: { app: { servers: [up.url], health: { type: 'http', path: '/healthz', interval: 100, timeout: 50 } } },
  })
  assert.ok(await eventually(() => up.state.served.length >= 2))
  await gateway.close()
  const after = up.state.served.length
  await sleep(400)
  assert.equal(up.state.served.length, after, 'a check ran after close()')
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
  const { gateway, url } = await gatewayServer(t, {
    // maxFails: 0 leaves passive health out, so it is the active checks that find the dead node.
    upstreams: { io: { servers: nodes.map((n) => n.url), health, maxFails: 0 } },
  })
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
      await sleep(10)
    }
  }
  await Promise.all([stream(6), stream(6)])
  assert.deepEqual(new Set(landed.map((l) => l.node)), new Set(['a', 'b', 'c']))

  const running = Promise.all([stream(400), stream(400)])
  const killedAt = Date.now()
  await victim.kill()
  // Watch the victim's checks: it must go down on the `fall`-th failed check after the kill, no later.
  const failedChecks = new Set<number>()
  const watcher = setInterval(() => {
    const last = serverOf().lastCheck
    if (last !== null && !last.ok && last.at >= killedAt) failedChecks.add(last.at)
  }, 5)
  const down = await nextState(gateway, 'down', victim.url)
  clearInterval(watcher)
  downSeen = true
  const failuresAtDown = serverOf().failures
  assert.equal(down.reason, 'ECONNREFUSED')
  failedChecks.add(serverOf().lastCheck!.at)
  assert.ok(failedChecks.size <= health.fall, `down only after ${failedChecks.size} failed checks (fall is ${health.fall})`)
  // Rounds are at most interval × 1.1 apart (see the jitter test), so that is within fall × interval × 1.1 + timeout;
  // the wall clock is only a loose sanity check here.
  const bound = health.fall * health.interval * (1 + JITTER_FRACTION) + health.timeout
  assert.ok(down.at - killedAt <= bound + 3_000, `down after ${down.at - killedAt} ms; expected about ${bound} ms`)

  const before = landed.length
  assert.ok(await eventually(() => landed.length >= before + 20, 15_000), 'the stream stalled')
  assert.equal(serverOf().failures, failuresAtDown, 'a client was sent to the node after it was reported down')
  assert.deepEqual(landed.filter((l) => l.afterDown && l.node === 'c'), [])

  await victim.start()
  const up = await nextState(gateway, 'up', victim.url)
  assert.equal(up.reason, `passed ${health.rise} checks`)
  const atUp = landed.length
  assert.ok(await eventually(() => landed.slice(atUp).some((l) => l.node === 'c'), 15_000), 'the restarted node got no new client')
  run.stop = true
  await running
  assert.deepEqual(failed, [], 'a client failed although failover had healthy nodes')
})
