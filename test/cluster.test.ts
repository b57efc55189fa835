/**
 * sockgate/cluster with real processes: test/fixtures/cluster-app.ts runs as
 * a primary with two workers in front of an upstream in this process, which
 * tells each client which worker forwarded it (the `x-worker-pid` header the
 * gateway adds). Every process started here is stopped by its PID.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import http from 'node:http'
import { test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import WebSocket, { WebSocketServer } from 'ws'
import type { GatewayStatus, ServerStatus } from '../src/index.js'
import { mergeMetrics, mergeStatus } from '../src/cluster/merge.js'
import { BoxSessions } from '../src/cluster/sessions.js'
import { StickyStoreError } from '../src/errors.js'
import { renderStatusHtml } from '../src/status.js'
import { startCluster, type ClusterApp } from '../src/cluster.js'
import { listen } from './helpers/servers.js'
import { emitAcks, request, socketIoClient, socketIoCluster, type SocketIoNode } from './helpers/balance.js'
import { sleep } from './helpers/cluster.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/cluster-app.ts', import.meta.url))
/** Bounds on waiting for something a process does by itself: start-up, a replacement, an exit. */
const START_TIMEOUT_MS = 30_000
const POLL_MS = 100
/** Every test ends by itself, whatever the processes do. */
const TEST_TIMEOUT = { timeout: 90_000 }

/** An upstream that answers GET with the forwarding worker's pid and greets each WebSocket with it, then echoes. */
async function upstream (t: TestContext): Promise<string> {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ worker: Number(req.headers['x-worker-pid']) }))
  })
  const wss = new WebSocketServer({ server })
  wss.on('connection', (ws, req) => {
    ws.send(`worker:${String(req.headers['x-worker-pid'])}`)
    ws.on('message', (data) => ws.send(data.toString()))
  })
  t.after(() => { for (const ws of wss.clients) ws.terminate() })
  return `http://127.0.0.1:${await listen(t, server)}`
}

interface Box {
  proc: ChildProcess
  port: number
  pids: number[]
  stderr: () => string
  exited: Promise<{ code: number | null, signal: string | null }>
  /** Every worker pid seen, so that the test's end can stop each one. */
  seen: Set<number>
}

/** Start the fixture's primary; resolves once it printed its port (or exited: `port` is then 0). */
async function startBox (t: TestContext, env: Record<string, string>): Promise<Box> {
  const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  proc.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exited = new Promise<{ code: number | null, signal: string | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })))
  const seen = new Set<number>()
  t.after(async () => {
    // Workers first: a worker stopped by a test would not notice its primary going away.
    for (const pid of seen) signal(pid, 'SIGKILL')
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    await exited
  })
  const ready = await new Promise<{ port: number, pids: number[] }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the box did not start within ${START_TIMEOUT_MS} ms: ${stderr}`)), START_TIMEOUT_MS)
    proc.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
      const line = stdout.split('\n').find((l) => l.startsWith('{'))
      if (line === undefined) return
      clearTimeout(timer)
      resolve(JSON.parse(line) as { port: number, pids: number[] })
    })
    proc.once('exit', () => { clearTimeout(timer); resolve({ port: 0, pids: [] }) })
  })
  for (const pid of ready.pids) seen.add(pid)
  return { proc, ...ready, stderr: () => stderr, exited, seen }
}

/** Send `sig` to `pid`; a process already gone is no error. */
function signal (pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {
    // Gone already.
  }
}

/** One GET on a connection of its own (so node:cluster picks a worker for it), given up after `timeout`. */
function get (port: number, path: string, timeout = 5_000): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer to ${path} within ${timeout} ms`)))
    req.on('error', reject)
  })
}

/** The box's status once every worker answered in time (a loaded machine can make one miss a second). */
function statusOfAll (box: Box): Promise<GatewayStatus> {
  return eventually('an answer from every worker', 10_000, async () => {
    const s = await status(box)
    return s.cluster?.workers.every((w) => w.answered) === true ? s : undefined
  })
}

async function status (box: Box, timeout?: number): Promise<GatewayStatus> {
  const res = await get(box.port, '/sockgate/status?format=json', timeout)
  assert.equal(res.status, 200, res.body)
  const body = JSON.parse(res.body) as GatewayStatus
  for (const w of body.cluster?.workers ?? []) box.seen.add(w.pid)
  return body
}

function requestsCounted (s: GatewayStatus): number {
  return Object.values(s.pools).flatMap((p) => p.servers).reduce((n, server) => n + server.requests, 0)
}

/** A WebSocket through the box, resolved with the pid of the worker that forwarded it. */
async function openTunnel (t: TestContext, port: number): Promise<{ ws: WebSocket, worker: number }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
  t.after(() => ws.terminate())
  const first = await new Promise<string>((resolve, reject) => {
    ws.once('message', (data) => resolve(data.toString()))
    ws.once('error', reject)
    ws.once('close', () => reject(new Error('the tunnel closed')))
  })
  return { ws, worker: Number(first.replace('worker:', '')) }
}

function echo (ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    if (ws.readyState !== WebSocket.OPEN) return reject(new Error('the tunnel is closed'))
    ws.once('message', (data) => resolve(data.toString()))
    ws.once('error', reject)
    ws.once('close', () => reject(new Error('the tunnel closed')))
    ws.send(text)
  })
}

/** Resolves once a new connection to the box is refused (every worker stopped accepting). */
function refused (box: Box): Promise<true> {
  return eventually('new connections refused', 10_000, async () => {
    try {
      await get(box.port, '/', 1_000)
      return undefined
    } catch (err) {
      return (err as { code?: string }).code === 'ECONNREFUSED' ? true : undefined
    }
  })
}

/** `promise`, or a rejection naming `what` after `ms`. */
function within<T> (what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms) })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

/** Poll `check` until it returns a value, for at most `ms`. */
async function eventually<T> (what: string, ms: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    await sleep(POLL_MS)
  }
  throw new Error(`${what} did not happen within ${ms} ms${last === undefined ? '' : `: ${String(last)}`}`)
}

test('cluster: two workers on one port, one status page and one metrics text for both', TEST_TIMEOUT, async (t) => {
  const box = await startBox(t, { CLUSTER_UPSTREAM: await upstream(t) })
  assert.equal(box.pids.length, 2)
  assert.notEqual(box.pids[0], box.pids[1])

  await t.test('requests land on both workers', async () => {
    const workers = new Set<number>()
    for (let i = 0; i < 6; i++) workers.add((JSON.parse((await get(box.port, '/')).body) as { worker: number }).worker)
    assert.deepEqual([...workers].sort(), [...box.pids].sort())
  })

  await t.test('tunnels land on both workers', async (t) => {
    const workers = new Set<number>()
    for (let i = 0; i < 4; i++) {
      const { ws, worker } = await openTunnel(t, box.port)
      workers.add(worker)
      assert.equal(await echo(ws, `hello ${i}`), `hello ${i}`)
      ws.close()
    }
    assert.deepEqual([...workers].sort(), [...box.pids].sort())
  })

  await t.test("the status page of any worker counts both workers' requests and says both answered", async () => {
    const before = requestsCounted(await statusOfAll(box))
    const workers = new Set<number>()
    for (let i = 0; i < 10; i++) workers.add((JSON.parse((await get(box.port, '/')).body) as { worker: number }).worker)
    assert.equal(workers.size, 2)
    // Asked on four connections of their own: both workers' pages answer.
    for (let i = 0; i < 4; i++) {
      const s = await statusOfAll(box)
      assert.equal(requestsCounted(s) - before, 10)
      assert.deepEqual(s.cluster?.workers.map((w) => [w.pid, w.answered]).sort(), box.pids.map((pid) => [pid, true]).sort())
      const server = s.pools.default!.servers[0]!
      assert.deepEqual(server.workers?.map((w) => w.state), ['up', 'up'])
    }
  })

  await t.test('the metrics text sums both workers and is one valid exposition', async () => {
    const expected = requestsCounted(await statusOfAll(box))
    const res = await eventually('metrics from every worker', 10_000, async () => {
      const r = await get(box.port, '/sockgate/status?format=prometheus')
      return r.body.includes('\nsockgate_cluster_workers_answered 2\n') ? r : undefined
    })
    assert.equal(res.status, 200)
    const samples = new Map<string, number>()
    const heads = new Set<string>()
    for (const line of res.body.trimEnd().split('\n')) {
      const meta = /^# (HELP|TYPE) (\w+) .+$/.exec(line)
      if (meta !== null) {
        assert.ok(!heads.has(`${meta[1]} ${meta[2]}`), `${line} repeated`)
        heads.add(`${meta[1]} ${meta[2]}`)
        continue
      }
      const sample = /^(\w+(?:\{[^}]*\})?) (-?[0-9.e+]+)$/.exec(line)
      assert.ok(sample !== null, `not a sample line: ${line}`)
      assert.ok(!samples.has(sample[1]!), `${sample[1]} repeated`)
      samples.set(sample[1]!, Number(sample[2]))
    }
    const requests = [...samples].filter(([k]) => k.startsWith('sockgate_requests_total{')).reduce((n, [, v]) => n + v, 0)
    assert.equal(requests, expected)
    assert.equal(samples.get('sockgate_cluster_workers_answered'), 2)
    assert.equal([...samples].find(([k]) => k.startsWith('sockgate_upstream_up{'))?.[1], 1)
  })

  await t.test('a stopped worker does not hang the page: the other answers and names it as missing', async (t) => {
    const [stuck, live] = box.pids as [number, number]
    signal(stuck, 'SIGSTOP')
    t.after(() => signal(stuck, 'SIGCONT'))
    // A connection node:cluster had already handed the stopped worker waits; the next ones go to the live one.
    const s = await eventually('an answer from the live worker', 15_000, async () => {
      const now = await status(box, 3_000)
      return now.cluster?.workers.some((w) => w.pid === live && w.answered) === true ? now : undefined
    })
    assert.deepEqual(s.cluster?.workers.map((w) => [w.pid, w.answered]).sort(), [[live, true], [stuck, false]].sort())
    signal(stuck, 'SIGCONT')
    await statusOfAll(box)
  })

  await t.test('a worker killed by SIGKILL is replaced and traffic goes on', async () => {
    const [victim, survivor] = box.pids as [number, number]
    signal(victim, 'SIGKILL')
    const s = await eventually('a replacement worker', 15_000, async () => {
      const now = await status(box)
      const pids = now.cluster?.workers.filter((w) => w.answered).map((w) => w.pid) ?? []
      return pids.length === 2 && !pids.includes(victim) ? now : undefined
    })
    const pids = s.cluster!.workers.map((w) => w.pid)
    assert.ok(pids.includes(survivor))
    assert.match(box.stderr(), new RegExp(`worker ${victim} exited with signal SIGKILL; starting another in \\d+ ms`))
    const workers = new Set<number>()
    for (let i = 0; i < 6; i++) {
      const res = await get(box.port, '/')
      assert.equal(res.status, 200)
      workers.add((JSON.parse(res.body) as { worker: number }).worker)
    }
    assert.deepEqual([...workers].sort(), [...pids].sort())
  })
})

test('cluster: on SIGTERM an open tunnel runs on, new connections are refused, and the primary exits 0 once it ends', TEST_TIMEOUT, async (t) => {
  const box = await startBox(t, { CLUSTER_UPSTREAM: await upstream(t), CLUSTER_DRAIN: '20000' })
  const { ws } = await openTunnel(t, box.port)
  box.proc.kill('SIGTERM')
  await refused(box)
  assert.equal(await echo(ws, 'still here'), 'still here')
  assert.equal(box.proc.exitCode, null, 'the primary waits for the drain')
  ws.close()
  assert.deepEqual(await within('the primary exiting', 15_000, box.exited), { code: 0, signal: null })
})

test('cluster: a second SIGTERM during the drain kills the workers and the primary exits 1', TEST_TIMEOUT, async (t) => {
  const box = await startBox(t, { CLUSTER_UPSTREAM: await upstream(t), CLUSTER_DRAIN: '60000' })
  const { ws } = await openTunnel(t, box.port)
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()))
  box.proc.kill('SIGTERM')
  // The drain is under way once the port is closed.
  await refused(box)
  box.proc.kill('SIGTERM')
  assert.deepEqual(await within('the primary exiting', 15_000, box.exited), { code: 1, signal: null })
  await within('the tunnel ending', 15_000, closed)
  for (const pid of box.pids) {
    await eventually(`worker ${pid} gone`, 10_000, async () => {
      try {
        process.kill(pid, 0)
        return undefined
      } catch {
        return true
      }
    })
  }
})

/** Which worker forwarded each request (and upgrade) of a session to which node: `sid` → node name → worker pids. */
function recordSessions (nodes: readonly SocketIoNode[]): Map<string, Map<string, Set<number>>> {
  const seen = new Map<string, Map<string, Set<number>>>()
  for (const node of nodes) {
    const record = (req: http.IncomingMessage): void => {
      const sid = new URL(req.url ?? '/', 'http://x').searchParams.get('sid')
      if (sid === null) return
      let byNode = seen.get(sid)
      if (byNode === undefined) seen.set(sid, byNode = new Map())
      let pids = byNode.get(node.name)
      if (pids === undefined) byNode.set(node.name, pids = new Set())
      pids.add(Number(req.headers['x-worker-pid']))
    }
    node.server.prependListener('request', record)
    node.server.prependListener('upgrade', record)
  }
  return seen
}

test('cluster: with the default options a Socket.IO session lives while its requests reach both workers (one learned table per box)', TEST_TIMEOUT, async (t) => {
  const nodes = await socketIoCluster(t, 2)
  const sessions = recordSessions(nodes)
  const box = await startBox(t, { CLUSTER_UPSTREAM: nodes.map((n) => n.url).join(',') })
  const url = `http://127.0.0.1:${box.port}`
  const unknownSids = (): number => nodes.reduce((n, node) => n + node.unknownSid(), 0)

  for (const transports of [['polling'], ['polling', 'websocket']]) {
    await t.test(`transports: ${transports.join(', ')}`, async (t) => {
      const unknownBefore = unknownSids()
      // No reconnection: a session that breaks shows as a disconnect, not as a new session.
      const socket = socketIoClient(t, url, { transports, reconnection: false })
      let disconnects = 0
      socket.on('disconnect', () => { disconnects++ })
      await within('the connection', 10_000, new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve())
        socket.once('connect_error', reject)
      }))
      const sid = socket.io.engine.id
      const acks = await emitAcks(socket, 12)
      assert.equal(acks.filter((a) => a === undefined).length, 0, 'every emit is acked')
      assert.equal(new Set(acks).size, 1, 'one node acked them all')
      assert.equal(socket.io.engine.id, sid, 'the same engine.io session throughout')
      assert.equal(disconnects, 0)
      if (transports.includes('websocket')) assert.equal(socket.io.engine.transport.name, 'websocket')
      const byNode = sessions.get(sid)!
      assert.deepEqual([...byNode.keys()], [acks[0]], 'every request of the session reached its node')
      // The workers really took turns: without one table, the worker that did not see the handshake balances afresh.
      assert.deepEqual([...byNode.get(acks[0]!)!].sort(), [...box.pids].sort())
      // Counted while the session is open: once the client closes, a poll already on its way may fairly meet a closed session.
      assert.equal(unknownSids(), unknownBefore, 'no "Session ID unknown" while the session lives')
    })
  }

  await t.test('the table outlives a worker: its replacement finds a session opened before it started', async () => {
    const unknownBefore = unknownSids()
    const polling = '/socket.io/?EIO=4&transport=polling'
    const sid = (JSON.parse((await request(box.port, polling)).body.slice(1)) as { sid: string }).sid
    const [victim] = box.pids as [number, number]
    signal(victim, 'SIGKILL')
    const pids = await eventually('a replacement worker', 15_000, async () => {
      const now = (await status(box)).cluster?.workers.filter((w) => w.answered).map((w) => w.pid) ?? []
      return now.length === 2 && !now.includes(victim) ? now : undefined
    })
    // Engine.io pongs: each a request of the session on a connection of its own, answered "ok" only by its node.
    for (let i = 0; i < 6; i++) {
      const res = await request(box.port, `${polling}&sid=${sid}`, { method: 'POST', body: '3', headers: { 'content-type': 'text/plain' } })
      assert.equal(res.status, 200, res.body)
    }
    const byNode = sessions.get(sid)!
    assert.equal(byNode.size, 1, 'every request of the session reached its node')
    const workers = [...byNode.values()][0]!
    for (const pid of pids) assert.ok(workers.has(pid), `worker ${pid} forwarded some`)
    assert.equal(unknownSids(), unknownBefore, 'no "Session ID unknown"')
  })

  assert.equal(nodes.reduce((n, node) => n + node.connections(), 0), 2, 'one Socket.IO connection per client')
})

test('cluster: a sticky cookie without a secret is refused in a worker, and startCluster() fails with the fix', TEST_TIMEOUT, async (t) => {
  const box = await startBox(t, { CLUSTER_UPSTREAM: await upstream(t), CLUSTER_MODE: 'cookie-without-secret' })
  assert.deepEqual(await within('the primary exiting', START_TIMEOUT_MS, box.exited), { code: 1, signal: null })
  assert.equal(box.port, 0)
  const stderr = box.stderr()
  assert.match(stderr, /startCluster failed: SOCKGATE_ERR_INVALID_OPTION sockgate\/cluster: worker \d+ could not start: /)
  assert.match(stderr, /sticky\.cookie\.secret is required in a node:cluster worker/)
  assert.match(stderr, /the same secret/)
})

// The merge rules on their own (src/cluster/merge.ts): plain values in, plain values out.

function serverStatus (fields: Partial<ServerStatus>): ServerStatus {
  const counts = { activeTunnels: 0, activeRequests: 0, requests: 0, upgrades: 0, failures: 0, bytesIn: 0, bytesOut: 0 }
  return { url: 'http://127.0.0.1:5001', name: null, state: 'up', reason: null, weight: 1, backup: false, ...counts, lastCheck: null, ...fields }
}

test('cluster merge: a server down in one worker is down for the box, with each worker\'s state beside it', () => {
  const part = (pid: number, server: Partial<ServerStatus>, open: number) => ({ pid, value: { pools: { p: { servers: [serverStatus(server)] } }, tunnels: { open } } })
  const merged = mergeStatus([
    part(1, { state: 'up', requests: 3, activeTunnels: 2, lastCheck: { at: 10, ok: true, ms: 1 } }, 2),
    part(2, { state: 'down', reason: 'passive', requests: 4, activeTunnels: 1, lastCheck: { at: 20, ok: false, ms: 9 } }, 1),
    { pid: 3, value: null },
  ])
  assert.equal(merged.perClient, undefined)
  const server = merged.pools.p!.servers[0]!
  assert.deepEqual([server.state, server.reason, server.requests, server.activeTunnels, server.lastCheck?.at], ['down', 'passive', 7, 3, 20])
  assert.deepEqual(server.workers, [{ pid: 1, state: 'up', reason: null }, { pid: 2, state: 'down', reason: 'passive' }])
  assert.deepEqual(merged.tunnels, { open: 3 })
  assert.deepEqual(merged.cluster?.workers, [{ pid: 1, answered: true }, { pid: 2, answered: true }, { pid: 3, answered: false }])
})

test('cluster merge: figures of other features (perClient) are summed like counts', () => {
  const part = (pid: number, clients: number, connections: number) => ({
    pid,
    value: { pools: {}, tunnels: { open: 0 }, perClient: { clients, refused: { connections, requestsPerSecond: 1, upgradesPerMinute: 0 } } },
  })
  const merged = mergeStatus([part(1, 5, 2), part(2, 7, 3)] as never)
  assert.deepEqual(merged.perClient, { clients: 12, refused: { connections: 5, requestsPerSecond: 2, upgradesPerMinute: 0 } })
})

test('cluster merge: the HTML page names the workers counted and the missing, and each state when the workers disagree', () => {
  const html = renderStatusHtml(mergeStatus([
    { pid: 11, value: { pools: { p: { servers: [serverStatus({ state: 'up' })] } }, tunnels: { open: 0 } } },
    { pid: 12, value: { pools: { p: { servers: [serverStatus({ state: 'down', reason: 'passive' })] } }, tunnels: { open: 0 } } },
    { pid: 13, value: null },
  ]))
  assert.match(html, /2 of 3 workers counted: pid 11, pid 12 · <span class="bad">no answer in time from pid 13<\/span>/)
  assert.match(html, /<span class="state state-down">down<\/span><br><small>pid 11: up, pid 12: down \(passive\)<\/small>/)
})

test('cluster merge: metrics add up counters and counting gauges, and up is 1 only when every worker says so', () => {
  const text = (up: number, requests: number, open: number): string =>
    '# HELP sockgate_upstream_up Up.\n# TYPE sockgate_upstream_up gauge\n' + `sockgate_upstream_up{pool="p",server="a b"} ${up}\n` +
    '# HELP sockgate_tunnels_open Open.\n# TYPE sockgate_tunnels_open gauge\n' + `sockgate_tunnels_open ${open}\n` +
    '# HELP sockgate_requests_total Requests.\n# TYPE sockgate_requests_total counter\n' + `sockgate_requests_total{pool="p",server="a b",status="200"} ${requests}\n`
  const merged = mergeMetrics([{ pid: 1, value: text(1, 5, 2) }, { pid: 2, value: text(0, 6, 3) }, { pid: 3, value: null }])
  assert.equal(merged, '# HELP sockgate_upstream_up Up.\n# TYPE sockgate_upstream_up gauge\nsockgate_upstream_up{pool="p",server="a b"} 0\n' +
    '# HELP sockgate_tunnels_open Open.\n# TYPE sockgate_tunnels_open gauge\nsockgate_tunnels_open 5\n' +
    '# HELP sockgate_requests_total Requests.\n# TYPE sockgate_requests_total counter\nsockgate_requests_total{pool="p",server="a b",status="200"} 11\n' +
    '# HELP sockgate_cluster_workers Workers of the sockgate/cluster box asked for these figures.\n# TYPE sockgate_cluster_workers gauge\nsockgate_cluster_workers 3\n' +
    '# HELP sockgate_cluster_workers_answered Workers whose figures are counted here (the others did not answer in time).\n' +
    '# TYPE sockgate_cluster_workers_answered gauge\nsockgate_cluster_workers_answered 2\n')
})

test('cluster sessions: the primary\'s table answers gets by request id, forgets deleted sessions, and its failure names the primary', () => {
  const box = new BoxSessions()
  const get = (id: number, key: string) => box.handle({ sockgate: 'cluster', type: 'sid-get', id, key })
  assert.deepEqual(get(1, 'sockgate:sid:p:a'), { sockgate: 'cluster', type: 'sid', id: 1, value: null })
  assert.equal(box.handle({ sockgate: 'cluster', type: 'sid-set', key: 'sockgate:sid:p:a', value: 'http://127.0.0.1:5001' }), undefined)
  assert.equal(box.handle({ sockgate: 'cluster', type: 'sid-touch', key: 'sockgate:sid:p:a' }), undefined)
  assert.deepEqual(get(2, 'sockgate:sid:p:a'), { sockgate: 'cluster', type: 'sid', id: 2, value: 'http://127.0.0.1:5001' })
  assert.equal(get(3, 'sockgate:sid:q:a')?.value, null, 'keys are per pool')
  box.handle({ sockgate: 'cluster', type: 'sid-del', key: 'sockgate:sid:p:a' })
  assert.equal(get(4, 'sockgate:sid:p:a')?.value, null)
  const error = new StickyStoreError('p', 'cluster', 'did not answer within 150 ms')
  assert.equal(error.code, 'SOCKGATE_ERR_STICKY_STORE')
  assert.match(error.message, /^The sticky session store of pool "p" \(cluster\) did not answer within 150 ms; .+ The sockgate\/cluster primary keeps this table: check that it runs/)
  assert.doesNotMatch(error.message, /Redis/)
})

test('cluster: startCluster() refuses bad options before it forks anything, naming the option', async () => {
  const start = (): ClusterApp => { throw new Error('never called') }
  await assert.rejects(startCluster({ workers: 0, start }), { code: 'SOCKGATE_ERR_INVALID_OPTION', message: 'workers must be an integer >= 1' })
  await assert.rejects(startCluster({ start, drain: -1 }), { code: 'SOCKGATE_ERR_INVALID_OPTION', message: 'drain must be an integer >= 0 (ms)' })
  await assert.rejects(startCluster({ start: 'app.js' } as never), { code: 'SOCKGATE_ERR_INVALID_OPTION', message: /^start must be a function/ })
  await assert.rejects(startCluster({ start, timeout: 5 } as never), {
    code: 'SOCKGATE_ERR_INVALID_OPTION',
    message: 'timeout is not an option of startCluster() (expected one of: workers, start, drain, logger)',
  })
})
