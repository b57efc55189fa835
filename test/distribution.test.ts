/**
 * How methods spread real connections from many client addresses (issue 4).
 * Every client binds its socket to its own 127.x.y.z address (Linux routes all
 * of 127.0.0.0/8 to `lo`), so ip-hash sees that many distinct clients.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { WebSocket } from 'ws'
import type { BalanceOption, StickyOptions } from '../src/index.js'
import { gatewayServer } from './helpers/servers.js'
import { loopbackAddress, mapLimit, namedNodes, request, tally, type NamedNode } from './helpers/balance.js'

/** In-flight connections at once while a test fans out. */
const CONCURRENCY = 24

async function balancedGateway (t: TestContext, nodes: readonly NamedNode[], balance: BalanceOption, weights: readonly number[] = [], sticky?: StickyOptions): Promise<Awaited<ReturnType<typeof gatewayServer>>> {
  return await gatewayServer(t, {
    upstreams: {
      app: {
        servers: nodes.map((n, i) => ({ url: n.url, weight: weights[i] ?? 1 })),
        balance,
        ...(sticky === undefined ? {} : { sticky }),
      },
    },
  })
}

/** The node that answers one request from each of `count` distinct addresses (starting at address `from`). */
async function pickPerAddress (port: number, count: number, from = 0): Promise<string[]> {
  return await mapLimit(Array.from({ length: count }, (_, i) => loopbackAddress(from + i)), CONCURRENCY,
    async (localAddress) => (await request(port, '/', { localAddress })).body)
}

/** Asserts each node's count is within `tolerance` (relative) of its weighted share of the total. */
function assertWeighted (counts: Map<string, number>, weights: readonly number[], tolerance: number): void {
  const n = [...counts.values()].reduce((a, b) => a + b, 0)
  const total = weights.reduce((a, b) => a + b, 0)
  for (const [i, w] of weights.entries()) {
    const expected = n * w / total
    const got = counts.get(`n${i}`) ?? 0
    assert.ok(Math.abs(got - expected) <= tolerance * expected, `n${i} (weight ${w}) got ${got} of ${n}, expected ${expected} ± ${tolerance * 100}%`)
  }
}

test('distribution: round-robin follows the weights within 5% over 720 connections from distinct addresses', async (t) => {
  const nodes = await namedNodes(t, 3)
  const weights = [3, 2, 1]
  const { port } = await balancedGateway(t, nodes, 'round-robin', weights)
  assertWeighted(tally(await pickPerAddress(port, 720), nodes), weights, 0.05)
})

test('distribution: random-two follows the weights within 5% over 720 open tunnels from distinct addresses', async (t) => {
  const nodes = await namedNodes(t, 3)
  const weights = [3, 2, 1]
  const { port } = await balancedGateway(t, nodes, 'random-two', weights)
  // Tunnels stay open, so random-two sees the load it balances on.
  const names = await mapLimit(Array.from({ length: 720 }, (_, i) => loopbackAddress(i)), CONCURRENCY, (localAddress) =>
    new Promise<string>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { localAddress })
      t.after(() => ws.terminate())
      ws.once('message', (data) => resolve(String(data)))
      ws.once('error', reject)
    }))
  assert.deepEqual(nodes.map((n) => n.open()), nodes.map((n) => names.filter((x) => x === n.name).length))
  assertWeighted(tally(names, nodes), weights, 0.05)
})

test('distribution: ip-hash spreads 2000 client addresses over five servers within 5% of equal shares', async (t) => {
  const nodes = await namedNodes(t, 5)
  const { port } = await balancedGateway(t, nodes, 'ip-hash')
  const names = await pickPerAddress(port, 2000)
  // Hashing is not counting: the ring's own unevenness plus sampling noise over 2000 keys are each a few
  // percent of a server's share, so the bound here is 5 percentage points of the whole (± 25% of a 20% share).
  const counts = tally(names, nodes)
  for (const [name, got] of counts) assert.ok(Math.abs(got / 2000 - 0.2) <= 0.05, `${name} got ${got} of 2000`)
  // And it is sticky: the same address again lands on the same server.
  assert.deepEqual(await pickPerAddress(port, 200), names.slice(0, 200))
})

test('distribution: removing one ip-hash server of five remaps at most a quarter of clients, all from the removed server', async (t) => {
  const nodes = await namedNodes(t, 5)
  const { port, gateway } = await balancedGateway(t, nodes, 'ip-hash')
  const before = await pickPerAddress(port, 1000)
  gateway.pool('app').remove(nodes[3]!.url)
  const after = await pickPerAddress(port, 1000)
  const moved = after.filter((name, i) => name !== before[i])
  assert.ok(moved.length <= 250, `${moved.length} of 1000 clients moved`)
  for (const [i, name] of after.entries()) {
    if (name !== before[i]) assert.equal(before[i], 'n3', `client ${loopbackAddress(i)} moved from ${before[i]} to ${name}`)
  }
  assert.ok(!after.includes('n3'))
})

test('distribution: two independent ip-hash gateways pick the same server for every client', async (t) => {
  const nodes = await namedNodes(t, 3)
  const one = await balancedGateway(t, nodes, 'ip-hash')
  const two = await balancedGateway(t, nodes, 'ip-hash')
  const a = await pickPerAddress(one.port, 300)
  const b = await pickPerAddress(two.port, 300)
  assert.deepEqual(b, a)
  assert.equal(new Set(a).size, 3)
})

test('distribution: two independent gateways honour each other\'s sticky cookies', async (t) => {
  const nodes = await namedNodes(t, 3)
  const one = await balancedGateway(t, nodes, 'round-robin', [], { cookie: 'sg_node' })
  const two = await balancedGateway(t, nodes, 'round-robin', [], { cookie: 'sg_node' })
  const seen = new Set<string>()
  for (let i = 0; i < 30; i++) {
    const first = await request(one.port, '/', { localAddress: loopbackAddress(i) })
    const cookie = first.headers['set-cookie']?.[0]?.split(';')[0]
    assert.ok(cookie !== undefined)
    seen.add(first.body)
    for (let k = 0; k < 3; k++) {
      const next = await request(two.port, '/', { localAddress: loopbackAddress(i), headers: { cookie } })
      assert.equal(next.body, first.body, `client ${i} stays on ${first.body} through the other gateway`)
      assert.equal(next.headers['set-cookie'], undefined)
    }
  }
  assert.equal(seen.size, 3)
})
