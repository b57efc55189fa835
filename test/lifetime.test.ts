/**
 * How tunnels end on purpose (issue 12): `timeouts.maxLifetime` with its
 * jitter, and `gateway.close({ drain, spread })` ending the tunnels left at
 * the deadline one after another instead of in one burst. Real `ws` clients
 * through a real gateway to a real `ws` upstream.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import v8 from 'node:v8'
import vm from 'node:vm'
import type { WebSocket } from 'ws'
import type { GatewayOptions } from '../src/index.js'
import { LIFETIME_JITTER, lifetimeDelay } from '../src/tunnel.js'
import { eventually, gatewayServer, nextMessage, openWs, recordEvents, watchForCrashes, wsEchoUpstream } from './helpers/servers.js'
import { mapLimit } from './helpers/balance.js'

watchForCrashes()

/** A ws echo upstream behind a gateway on a plain http server, with the gateway's events recorded. */
async function echoThroughGateway (t: TestContext, options: Partial<GatewayOptions> = {}) {
  const upstream = await wsEchoUpstream(t)
  const g = await gatewayServer(t, { target: upstream.url, ...options })
  return { upstream, ...g, events: recordEvents(g.gateway) }
}

/** `n` open clients through the gateway at `url`, opened a few dozen at a time. */
function openMany (t: TestContext, url: string, n: number): Promise<WebSocket[]> {
  return mapLimit(Array.from({ length: n }, (_, i) => i), 50, (i) => openWs(t, `${url}/c${i}`))
}

/** When each client saw its socket close (performance.now()), in the order the clients were given. */
function closeTimes (clients: readonly WebSocket[]): Array<Promise<number>> {
  return clients.map((ws) => new Promise((resolve) => ws.once('close', () => resolve(performance.now()))))
}

// ---------------------------------------------------------------- maxLifetime

test('lifetime: each tunnel\'s lifetime is drawn within 10% either side of timeouts.maxLifetime', () => {
  assert.equal(LIFETIME_JITTER, 0.1)
  assert.equal(lifetimeDelay(60_000, () => 0), 54_000)
  assert.equal(lifetimeDelay(60_000, () => 0.999_999), 66_000)
  assert.equal(lifetimeDelay(60_000, () => 0.5), 60_000)
  const delays = Array.from({ length: 2_000 }, () => lifetimeDelay(3_600_000))
  assert.ok(delays.every((d) => d >= 3_240_000 && d <= 3_960_000 && Number.isInteger(d)))
  // Spread over the whole range, in few enough distinct delays that Node's timer lists are shared.
  const distinct = new Set(delays)
  assert.ok(distinct.size > 150 && distinct.size <= 201, `${distinct.size} distinct delays`)
  assert.ok(Math.min(...delays) < 3_300_000 && Math.max(...delays) > 3_900_000)
})

test('lifetime: a lifetime near the longest Node timer is never drawn past it', () => {
  assert.equal(lifetimeDelay(2_147_483_647, () => 0.999_999), 2_147_483_647)
})

test('lifetime: timeouts.maxLifetime ends busy tunnels with reason max-lifetime, each at its own time, both sides closed', async (t) => {
  const records: Array<Record<string, unknown>> = []
  const keep = (obj: object, msg?: string): void => { if (msg === 'tunnel closed') records.push(obj as Record<string, unknown>) }
  const logger = { info: keep, warn: keep, error: keep, debug: keep }
  const { url, upstream, gateway, events } = await echoThroughGateway(t, { timeouts: { maxLifetime: 1_000 }, logger })
  const clients = await openMany(t, url, 20)
  // Traffic does not keep a tunnel past its lifetime (unlike timeouts.idle).
  for (const ws of clients) {
    const echo = nextMessage(ws)
    ws.send('still here')
    assert.equal(String(await echo), 'still here')
  }
  assert.ok(await eventually(() => clients.every((ws) => ws.readyState === ws.CLOSED), 3_000), 'a client outlived its tunnel\'s lifetime')
  assert.ok(await eventually(() => gateway.status().tunnels.open === 0), 'a tunnel stayed open')
  assert.ok(await eventually(() => upstream.sockets.size === 0), 'an upstream socket stayed open')
  assert.equal(events.closed.length, 20)
  for (const e of events.closed) {
    assert.equal(e.reason, 'max-lifetime')
    // 900 to 1100 ms by the draw; a timer never fires early, and a loaded machine may make it late.
    assert.ok(e.durationMs >= 899, `a tunnel ended after ${e.durationMs} ms`)
  }
  assert.deepEqual(new Set(records.map((r) => r.reason)), new Set(['max-lifetime']), 'the log records another reason')
  assert.equal(records.length, 20)
  const durations = events.closed.map((e) => e.durationMs)
  assert.ok(new Set(durations).size > 1, 'every tunnel lived exactly as long: no jitter')
})

test('lifetime: a tunnel that ends before its lifetime is not held in memory by its timer', async (t) => {
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as () => void
  const { url, gateway } = await echoThroughGateway(t, { timeouts: { maxLifetime: 3_600_000 } })
  const ws = await openWs(t, url + '/short')
  const tunnel = new WeakRef([...gateway.tunnels][0]!)
  ws.close()
  assert.ok(await eventually(() => gateway.tunnels.size === 0), 'the tunnel stayed open')
  for (let i = 0; i < 20 && tunnel.deref() !== undefined; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10))
    gc()
  }
  assert.equal(tunnel.deref(), undefined, 'an ended tunnel is still reachable, an hour before its timer would fire')
})

test('lifetime: without timeouts.maxLifetime a tunnel outlives a second', async (t) => {
  const { url, events } = await echoThroughGateway(t)
  const ws = await openWs(t, url + '/long')
  await new Promise((resolve) => setTimeout(resolve, 1_300))
  const echo = nextMessage(ws)
  ws.send('after 1.3 s')
  assert.equal(String(await echo), 'after 1.3 s')
  assert.equal(events.closed.length, 0)
})

// ---------------------------------------------------------------- close({ spread })

const TUNNELS = 200
const SPREAD = 1_500
const BINS = 10

/** Opens TUNNELS tunnels, closes the gateway with `options`, and returns the clients' close times relative to the first. */
async function closeAll (t: TestContext, options: { drain: number, spread?: number }) {
  const { url, gateway, events } = await echoThroughGateway(t)
  const clients = await openMany(t, url, TUNNELS)
  const closed = closeTimes(clients)
  const started = performance.now()
  await gateway.close(options)
  const resolvedAt = performance.now()
  const times = await Promise.all(closed)
  const first = Math.min(...times)
  return { relative: times.map((x) => x - first), first: first - started, resolvedAt: resolvedAt - started, last: Math.max(...times) - started, events }
}

/** How many of `relative` fall in each tenth of `window` ms (the last bin takes everything after it). */
function histogram (relative: readonly number[], window: number): number[] {
  const bins = new Array<number>(BINS).fill(0)
  for (const x of relative) bins[Math.min(BINS - 1, Math.floor(x / (window / BINS)))]!++
  return bins
}

test('close: { drain, spread } ends the tunnels left at the deadline evenly over spread ms, not in one burst', async (t) => {
  const { relative, first, last, resolvedAt, events } = await closeAll(t, { drain: 100, spread: SPREAD })
  const bins = histogram(relative, SPREAD)
  // Evenly would be 20 a bin; a busy machine may delay a timer and bunch a few, never a fifth of them.
  assert.ok(bins.every((n) => n <= TUNNELS / 5), `closes per tenth of the window: ${bins.join(' ')}`)
  assert.ok(Math.max(...relative) >= 0.7 * SPREAD, `first and last close only ${Math.round(Math.max(...relative))} ms apart`)
  assert.ok(first >= 99, `the first tunnel ended ${Math.round(first)} ms after close(), before the drain was over`)
  // close() resolves once the last tunnel is ended, not before.
  assert.ok(resolvedAt >= 100 + 0.7 * SPREAD, `close() resolved after ${Math.round(resolvedAt)} ms`)
  assert.ok(last - resolvedAt < 1_000, 'a client saw its tunnel close long after close() resolved')
  assert.equal(events.closed.length, TUNNELS)
  assert.ok(events.closed.every((e) => e.reason === 'drained'))
})

test('close: without spread the tunnels left at the deadline end in one burst', async (t) => {
  const { relative, events } = await closeAll(t, { drain: 100 })
  const bins = histogram(relative, SPREAD)
  assert.ok(bins[0]! >= TUNNELS * 0.9, `closes per tenth of the window: ${bins.join(' ')}`)
  assert.ok(events.closed.every((e) => e.reason === 'drained'))
})

test('close: { spread } without drain ends every tunnel over spread ms with reason gateway-closed', async (t) => {
  const { url, gateway, events } = await echoThroughGateway(t)
  const clients = await openMany(t, url, 20)
  const closed = closeTimes(clients)
  await gateway.close({ spread: 400 })
  const times = await Promise.all(closed)
  assert.ok(Math.max(...times) - Math.min(...times) >= 0.7 * 400, 'the tunnels ended together')
  assert.deepEqual(new Set(events.closed.map((e) => e.reason)), new Set(['gateway-closed']))
})

test('close: a spread that is not a whole number of ms from 0 to 2147483647 is refused and the gateway stays open', async (t) => {
  const { gateway } = await echoThroughGateway(t)
  for (const spread of [-1, 1.5, Number.NaN, 2 ** 31]) {
    assert.throws(() => gateway.close({ spread }), (err: unknown) => err instanceof RangeError && err.message.includes('spread'))
  }
  assert.equal(gateway.closed, false)
})
