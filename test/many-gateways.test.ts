/**
 * Two gateways, one session (issue 11, part 4): two gateway processes with
 * one configuration behind a TCP balancer that alternates connections
 * between them, as a Kubernetes Service or an NLB does in front of gateway
 * replicas. A Socket.IO session's requests therefore reach both gateways,
 * and each sticky mode must send all of them to the node that holds the
 * session; the default learned table, which lives in one process, cannot.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { io as ioClient } from 'socket.io-client'
import { engineIoId, type GatewayOptions, type TargetPoolOptions } from '../src/index.js'
import { emitAcks, socketIoCluster, type SocketIoNode } from './helpers/balance.js'
import { gatewayProcess, type GatewayProcess } from './helpers/gateway-process.js'
import { redisSkip, startRedis } from './helpers/redis.js'
import { tcpBalancer } from './helpers/tcp-balancer.js'
import { eventually } from './helpers/servers.js'
import type { GatewayProcessConfig } from './fixtures/gateway-process.js'

const NODES = 3
const EMITS = 6
const STATUS = '/sockgate/status'
/** Long enough for an ack over a loopback long-poll; a lost session answers never. */
const ACK_MS = 3_000
const SECRET = 'many-gateways-shared-secret'

type Transport = 'polling' | 'default'

/** What one client session did while its requests alternated between the gateways. */
interface Observation {
  /** The node that acked each emit (undefined: never acked). */
  acks: Array<string | undefined>
  /** The engine.io transport at the end. */
  transport: string
  /** Whether the engine.io session id at the end is the one the client first connected with. */
  sameSession: boolean
  reconnects: number
  disconnects: number
  /** engine.io "Session ID unknown" refusals the nodes gave. */
  unknownSid: number
  /** Requests plus upgrades each gateway forwarded. */
  forwarded: number[]
  /** TCP connections the balancer gave each gateway. */
  connections: number[]
}

/** Requests and upgrades a gateway process has forwarded, from its own status JSON. */
async function forwarded (gateway: GatewayProcess): Promise<number> {
  const res = await fetch(`${gateway.url}${STATUS}?format=json`)
  const body = await res.json() as { pools: Record<string, { servers: Array<{ requests: number, upgrades: number }> }> }
  let total = 0
  for (const pool of Object.values(body.pools)) for (const s of pool.servers) total += s.requests + s.upgrades
  return total
}

/**
 * Start two gateway processes with one `config` behind a balancer, run one
 * Socket.IO session through the balancer (connect, `EMITS` acked emits),
 * and report what happened.
 */
async function sessionAcrossTwoGateways (t: TestContext, nodes: readonly SocketIoNode[], config: GatewayProcessConfig, transport: Transport, withCredentials = false): Promise<Observation> {
  const gateways = await Promise.all([gatewayProcess(t, config), gatewayProcess(t, config)])
  const balancer = await tcpBalancer(t, gateways.map((g) => g.port))

  // In Node, socket.io-client's polling requests go through xmlhttprequest-ssl with no agent: a new TCP
  // connection each (and the long-poll GET and a POST are in flight at once), so the balancer alternates
  // them between the gateways; the upgrade is a connection of its own too. `forwarded` checks it happened.
  const client = ioClient(balancer.url, {
    forceNew: true,
    ...(transport === 'polling' ? { transports: ['polling'] } : {}),
    withCredentials,
    reconnectionDelay: 100,
    reconnectionDelayMax: 200,
    randomizationFactor: 0,
  })
  t.after(() => { client.disconnect() })
  let reconnects = 0
  let disconnects = 0
  client.io.on('reconnect_attempt', () => { reconnects++ })
  client.on('disconnect', () => { disconnects++ })
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve)
    client.once('connect_error', reject)
  })
  const sid = client.io.engine.id
  // The default transport upgrades to WebSocket once its probe went through; give it the moment it takes.
  if (transport === 'default') await eventually(() => client.io.engine.transport.name === 'websocket', ACK_MS)

  const acks = await emitAcks(client, EMITS, ACK_MS)
  return {
    acks,
    transport: client.io.engine.transport.name,
    sameSession: client.io.engine.id === sid,
    reconnects,
    disconnects,
    unknownSid: nodes.reduce((sum, n) => sum + n.unknownSid(), 0),
    forwarded: await Promise.all(gateways.map(forwarded)),
    connections: balancer.connections(),
  }
}

/** The session lived on one node from start to end, while both gateways carried its requests. */
function assertSessionLived (seen: Observation, transport: Transport): void {
  const node = seen.acks[0]
  assert.ok(node !== undefined, `the first emit was acked: ${JSON.stringify(seen)}`)
  assert.deepEqual(seen.acks, Array(EMITS).fill(node), 'every emit acked by the node that holds the session')
  assert.deepEqual({ unknownSid: seen.unknownSid, reconnects: seen.reconnects, disconnects: seen.disconnects, sameSession: seen.sameSession },
    { unknownSid: 0, reconnects: 0, disconnects: 0, sameSession: true })
  assert.equal(seen.transport, transport === 'polling' ? 'polling' : 'websocket')
  for (const [i, n] of seen.forwarded.entries()) assert.ok(n > 0, `gateway ${i} forwarded some of the session's requests: ${JSON.stringify(seen)}`)
  for (const [i, n] of seen.connections.entries()) assert.ok(n > 0, `the balancer sent connections to gateway ${i}: ${JSON.stringify(seen)}`)
}

/** One pool `io` over `nodes`, the status page, and `pool` beside the servers. */
function options (nodes: readonly SocketIoNode[], pool: TargetPoolOptions, named = false): GatewayOptions {
  return {
    upstreams: { io: { servers: nodes.map((n) => (named ? { url: n.url, name: n.name } : n.url)), ...pool } },
    status: { path: STATUS },
  }
}

interface Mode {
  mode: string
  /** The gateways' shared configuration, given the nodes (which a mode may change first). */
  config: (t: TestContext, nodes: readonly SocketIoNode[]) => GatewayProcessConfig | Promise<GatewayProcessConfig>
  withCredentials?: boolean
  skip?: false | string
}

const MODES: Mode[] = [
  {
    mode: 'named servers and engineIoId on the upstreams',
    config: (_t, nodes) => {
      for (const n of nodes) n.io.engine.generateId = engineIoId(n.name)
      return { options: options(nodes, {}, true) }
    },
  },
  ...(['ioredis', 'node-redis'] as const).map((client): Mode => ({
    mode: `the learned table in Redis (${client})`,
    // The upstreams stay as they are; a real redis-server of the test's own holds the table.
    config: async (t, nodes) => {
      const redis = await startRedis()
      t.after(() => redis.stop())
      return { options: options(nodes, {}), engineIoStore: { url: redis.url, client } }
    },
    skip: redisSkip,
  })),
  {
    // engineIo: false in the next two, so the mode itself (not a table learned by chance) carries the session.
    mode: 'the shared-secret cookie',
    config: (_t, nodes) => ({ options: options(nodes, { sticky: { engineIo: false, cookie: { name: 'sg_node', secret: SECRET } } }) }),
    // Node's socket.io-client keeps cookies only with withCredentials (docs/balancing.md).
    withCredentials: true,
  },
  {
    mode: 'ip-hash',
    config: (_t, nodes) => ({ options: options(nodes, { balance: 'ip-hash', sticky: { engineIo: false } }) }),
  },
]

for (const { mode, config, withCredentials, skip = false } of MODES) {
  for (const transport of ['polling', 'default'] as const) {
    test(`two gateways: a ${transport === 'polling' ? 'polling-only' : 'default-transport'} session whose requests alternate between them lives with ${mode}`, { skip }, async (t) => {
      const nodes = await socketIoCluster(t, NODES)
      assertSessionLived(await sessionAcrossTwoGateways(t, nodes, await config(t, nodes), transport, withCredentials), transport)
    })
  }
}

test('two gateways: with only the learned engine.io table (the default), a polling session reaching both meets "Session ID unknown"', async (t) => {
  const nodes = await socketIoCluster(t, NODES)
  const seen = await sessionAcrossTwoGateways(t, nodes, { options: options(nodes, {}) }, 'polling')
  // The gateway that did not see the handshake balances the sid like a new session: round-robin
  // over three nodes sends some of its requests to a node that never heard of it.
  assert.ok(seen.unknownSid > 0, `some node refused the session's sid: ${JSON.stringify(seen)}`)
  assert.ok(seen.reconnects > 0 || !seen.sameSession, 'the client had to start a new session')
})
