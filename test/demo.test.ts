import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { Browser, Page } from 'playwright-core'
import { io as connect, type Socket } from 'socket.io-client'
import { browserSkip, useBrowser } from './helpers/chromium.js'
import { redisSkip } from './helpers/redis.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** Set to a directory to keep a screenshot of the chat page from each browser test. */
const SCREENSHOT_DIR = process.env.SOCKGATE_DEMO_SCREENSHOTS
/** Pages opened, at most, to find two on different nodes; the demo balances round-robin, so the second page usually is. */
const MAX_PAGES = 12
/** How long the gateway may take to see a node go down or come up (its checks run every second; two decide). */
const STATE_DEADLINE_MS = 10_000
/** Between two looks at the gateway's status while waiting for a state. */
const POLL_MS = 200

interface Demo {
  child: ChildProcess
  url: string
  /** Every stdout line (and stderr chunk) so far. */
  output: string[]
  /** Emits 'line' for every stdout line after the URL line. */
  lines: EventEmitter
  exited: Promise<[number | null, NodeJS.Signals | null]>
}

/** Start `npm start`'s command on port 0 and wait for the line announcing its URL. */
async function startDemo (args: string[] = [], env: Record<string, string> = {}): Promise<Demo> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'demo/server.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  const output: string[] = []
  const lines = new EventEmitter()
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk))
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line)
      lines.emit('line', line)
      const match = /^sockgate demo listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line)
      if (match !== null) resolve(match[1]!)
    })
    exited.then(([code, signal]) => reject(new Error(`demo exited (${code ?? signal}) before listening:\n${output.join('\n')}`)), reject)
  })
  return { child, url, output, lines, exited }
}

/** The first line printed from `output[since]` on that `matches`; fails after `ms`. */
async function waitForLine (demo: Demo, matches: (line: string) => boolean, since: number, ms = STATE_DEADLINE_MS): Promise<string> {
  const seen = demo.output.slice(since).find(matches)
  if (seen !== undefined) return seen
  return await new Promise((resolve, reject) => {
    const onLine = (line: string): void => {
      if (!matches(line)) return
      clearTimeout(timer)
      demo.lines.off('line', onLine)
      resolve(line)
    }
    const timer = setTimeout(() => {
      demo.lines.off('line', onLine)
      reject(new Error(`no such line within ${ms} ms; the demo printed:\n${demo.output.slice(since).join('\n')}`))
    }, ms)
    demo.lines.on('line', onLine)
  })
}

/** Kill the demo by its PID if a test left it running. */
function stopDemo (demo: Demo): void {
  if (demo.child.exitCode === null && demo.child.signalCode === null) demo.child.kill('SIGKILL')
}

interface NodeView { name: string, url: string, listening: boolean, drained: boolean, gateway: { state: string, reason: string | null } }

/** POST one of the page's node controls. */
async function control (url: string, name: string, action: string): Promise<{ status: number, body: NodeView & { error?: string } }> {
  const res = await fetch(`${url}/demo/nodes/${name}/${action}`, { method: 'POST' })
  return { status: res.status, body: await res.json() as NodeView & { error?: string } }
}

/** What the gateway's status JSON says of the server named `name`. */
async function gatewayState (url: string, name: string): Promise<string | undefined> {
  const res = await fetch(`${url}/sockgate/status?format=json`)
  const body = await res.json() as { pools: Record<string, { servers: Array<{ name: string | null, state: string }> }> }
  return body.pools.chat_nodes?.servers.find((s) => s.name === name)?.state
}

/** Poll `read` until it returns `expected`; fails with the last value after `ms`. */
async function until<T> (what: string, read: () => Promise<T>, expected: T, ms = STATE_DEADLINE_MS): Promise<void> {
  const deadline = Date.now() + ms
  let last: T
  do {
    last = await read()
    if (last === expected) return
    await sleep(POLL_MS)
  } while (Date.now() < deadline)
  assert.fail(`${what}: still ${String(last)} after ${ms} ms, expected ${String(expected)}`)
}

/** Put a node back as the demo starts it (listening, not drained, up in the gateway) for the tests that follow. */
async function restoreNode (url: string, name: string): Promise<void> {
  assert.equal((await control(url, name, 'start')).status, 200)
  await until(`${name} in the gateway`, () => gatewayState(url, name), 'up')
}

/** A Socket.IO client through the demo, connected, and the node its session is on. */
async function connectClient (t: TestContext, url: string, options: Parameters<typeof connect>[1] = {}): Promise<{ client: Socket, node: string }> {
  const client = connect(url, { transports: ['websocket'], reconnection: false, ...options })
  t.after(() => client.close())
  const node = await new Promise<string>((resolve, reject) => {
    client.once('hello', (info: { node: string }) => resolve(info.node))
    client.once('connect_error', reject)
  })
  return { client, node }
}

/** A regular expression for a node other than `node`. */
function otherNode (node: string): RegExp {
  return new RegExp(`^(?!${node}$)node-\\d$`)
}

/** Open the chat page and wait until it is connected and knows its node; returns that node. */
async function openChat (browser: Browser, url: string, transport: string): Promise<{ page: Page, node: string }> {
  const page = await browser.newPage()
  await page.goto(`${url}/assets/index.html?transport=${transport}`)
  await page.locator('#state[data-state="connected"]').waitFor()
  await page.locator('#node', { hasText: /^node-\d$/ }).waitFor()
  return { page, node: await page.locator('#node').innerText() }
}

/** Open pages until two are on different upstream nodes (the test does not pick nodes; the balancer does). */
async function openTwoOnDifferentNodes (browser: Browser, url: string, transport: string): Promise<[Page, Page]> {
  const first = await openChat(browser, url, transport)
  for (let i = 1; i < MAX_PAGES; i++) {
    const other = await openChat(browser, url, transport)
    if (other.node !== first.node) return [first.page, other.page]
    await other.page.close()
  }
  assert.fail(`${MAX_PAGES} pages all landed on ${first.node}: is the demo's balancer spreading tabs over the nodes?`)
}

/**
 * Two pages on different nodes, both on `expected` (with `both`, after the upgrade from polling):
 * a message typed in one shows up in the other, marked with the sender's node.
 */
async function chatAcross (t: TestContext, browser: Browser, url: string, transport: 'websocket' | 'polling' | 'both', expected: 'websocket' | 'polling'): Promise<void> {
  const [a, b] = await openTwoOnDifferentNodes(browser, url, transport)
  t.after(() => Promise.all([a.close(), b.close()]))
  for (const page of [a, b]) await page.locator('#transport', { hasText: new RegExp(`^${expected}$`) }).waitFor()

  const text = `hello over ${transport} ${Math.random().toString(36).slice(2)}`
  await a.locator('#text').fill(text)
  await a.locator('#send').click()

  const received = b.locator('#messages li', { hasText: text })
  await received.waitFor()
  const nodeA = await a.locator('#node').innerText()
  assert.match(await received.innerText(), new RegExp(`via ${nodeA}$`))
  await a.locator('#messages li', { hasText: text }).waitFor()

  if (SCREENSHOT_DIR !== undefined) await screenshot(t, b, `demo-${transport}.png`)
}

/** Keep a screenshot of `page` in SCREENSHOT_DIR. */
async function screenshot (t: TestContext, page: Page, name: string): Promise<void> {
  await mkdir(SCREENSHOT_DIR!, { recursive: true })
  const file = path.join(SCREENSHOT_DIR!, name)
  await page.screenshot({ path: file })
  t.diagnostic(`screenshot: ${file}`)
}

describe('demo with the default flags (express, both transports)', () => {
  let demo: Demo
  before(async () => { demo = await startDemo() })
  after(() => { if (demo !== undefined) stopDemo(demo) })

  test('demo: the status page lists the three Socket.IO nodes by the names the terminal prints', async () => {
    const res = await fetch(`${demo.url}/sockgate/status?format=json`)
    assert.equal(res.status, 200)
    const body = await res.json() as { pools: Record<string, { servers: Array<{ url: string, name: string | null }> }> }
    const printed = [...demo.output.join('\n').matchAll(/^ {2}(node-\d) at (http:\/\/127\.0\.0\.1:\d+)$/gm)].map((m) => `${m[1]} ${m[2]}`)
    assert.equal(printed.length, 3)
    assert.deepEqual(body.pools.chat_nodes?.servers.map((s) => `${s.name} ${s.url}`).sort(), printed.sort())
  })

  test('demo: the node controls answer 404 for an unknown node or action', async () => {
    const unknownNode = await control(demo.url, 'node-9', 'stop')
    assert.equal(unknownNode.status, 404)
    assert.match(unknownNode.body.error ?? '', /no node named "node-9"/)
    const unknownAction = await control(demo.url, 'node-1', 'explode')
    assert.equal(unknownAction.status, 404)
    assert.match(unknownAction.body.error ?? '', /use stop, start, drain/)
  })

  test('demo: the terminal shows one line per finished tunnel, with its node, path, duration, bytes and reason', async (t) => {
    const since = demo.output.length
    const token = Math.random().toString(36).slice(2)
    const { client, node } = await connectClient(t, demo.url, { query: { token } })
    client.close()
    const line = await waitForLine(demo, (l) => l.includes('tunnel closed') && l.includes(token), since)
    assert.match(line, new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} info  tunnel closed  pool=chat_nodes server=http://127\\.0\\.0\\.1:\\d+ name=${node} `))
    // The node answers the client's close frame and closes first, so the reason is usually upstream-closed.
    for (const field of [/ path="\/socket\.io\/\?/, / clientAddress=127\.0\.0\.1\b/, / reason=[a-z-]+\b/, / durationMs=\d+\b/, / bytesIn=[1-9]\d*\b/, / bytesOut=[1-9]\d*\b/]) {
      assert.match(line, field)
    }
  })

  test('demo: the terminal shows a node stopped from the controls going down, then up once it is started', async (t) => {
    t.after(() => restoreNode(demo.url, 'node-2'))
    const stoppedAt = demo.output.length
    assert.equal((await control(demo.url, 'node-2', 'stop')).body.listening, false)
    await waitForLine(demo, (l) => /\bwarn {2}upstream down {2}.* name=node-2 reason=/.test(l), stoppedAt)
    const startedAt = demo.output.length
    assert.equal((await control(demo.url, 'node-2', 'start')).body.listening, true)
    await waitForLine(demo, (l) => /\binfo {2}upstream up {2}.* name=node-2 /.test(l), startedAt)
  })

  test('demo: new sessions avoid a drained node until it is started again', async (t) => {
    t.after(() => restoreNode(demo.url, 'node-1'))
    const drained = await control(demo.url, 'node-1', 'drain')
    assert.deepEqual({ drained: drained.body.drained, state: drained.body.gateway.state }, { drained: true, state: 'draining' })
    // Round-robin over three nodes: three sessions in a row would put one on node-1 were it not drained.
    for (let i = 0; i < 3; i++) assert.notEqual((await connectClient(t, demo.url)).node, 'node-1')

    assert.equal((await control(demo.url, 'node-1', 'start')).body.drained, false)
    // node-1 rejoins the rotation where it left it, so give it two rounds.
    const nodes: string[] = []
    while (nodes.length < 6 && !nodes.includes('node-1')) nodes.push((await connectClient(t, demo.url)).node)
    assert.ok(nodes.includes('node-1'), `six new sessions after the start, none on node-1: ${nodes.join(', ')}`)
  })

  describe('in Chromium', { skip: browserSkip }, () => {
    const chrome = useBrowser()

    test('demo: a message typed in one page appears in a page on another node over websocket', async (t) => {
      await chatAcross(t, chrome.browser, demo.url, 'websocket', 'websocket')
    })

    test('demo: a message typed in one page appears in a page on another node with polling only', async (t) => {
      await chatAcross(t, chrome.browser, demo.url, 'polling', 'polling')
    })

    test('demo: pages that start on polling upgrade to websocket on their own node and chat across nodes', async (t) => {
      await chatAcross(t, chrome.browser, demo.url, 'both', 'websocket')
    })

    for (const [transport, expected] of [['websocket', 'websocket'], ['polling', 'polling'], ['both', 'websocket']] as const) {
      test(`demo: a page (${transport}) whose node is stopped from its Stop button reconnects through another node and still chats`, async (t) => {
        const { page, node } = await openChat(chrome.browser, demo.url, transport)
        t.after(() => Promise.all([page.close(), restoreNode(demo.url, node)]))
        await page.locator('#transport', { hasText: new RegExp(`^${expected}$`) }).waitFor()

        await page.getByRole('button', { name: `Stop ${node}` }).click()
        await page.locator('#node', { hasText: otherNode(node) }).waitFor()
        const moved = await page.locator('#node').innerText()
        await page.locator('#messages li.note', { hasText: `Reconnected through ${moved}` }).waitFor()
        await page.locator('.node[data-here="true"]', { hasText: moved }).waitFor()
        await page.locator('#transport', { hasText: new RegExp(`^${expected}$`) }).waitFor()

        const text = `still here ${Math.random().toString(36).slice(2)}`
        await page.locator('#text').fill(text)
        await page.locator('#send').click()
        assert.match(await page.locator('#messages li', { hasText: text }).innerText(), new RegExp(`via ${moved}$`))
        if (SCREENSHOT_DIR !== undefined) await screenshot(t, page, `demo-stopped-${transport}.png`)
      })
    }

    test('demo: the status page shows the node stopped from the chat page down, and up again once it is started', async (t) => {
      const { page, node } = await openChat(chrome.browser, demo.url, 'websocket')
      const status = await chrome.browser.newPage()
      t.after(() => Promise.all([page.close(), status.close(), restoreNode(demo.url, node)]))
      const shown = async (): Promise<string> => {
        await status.goto(`${demo.url}/sockgate/status`)
        const row = status.locator('tbody tr', { has: status.locator('strong', { hasText: new RegExp(`^${node}$`) }) })
        return await row.locator('.state').innerText()
      }
      await until(`${node} on the status page`, shown, 'up')

      await page.getByRole('button', { name: `Stop ${node}` }).click()
      await until(`${node} on the status page`, shown, 'down')
      if (SCREENSHOT_DIR !== undefined) await screenshot(t, status, 'demo-status-down.png')

      await page.getByRole('button', { name: `Start ${node}` }).click()
      await until(`${node} on the status page`, shown, 'up')
    })

    test('demo: a websocket page on a node drained from its Drain button moves to another node when the drain ends its tunnel', async (t) => {
      const { page, node } = await openChat(chrome.browser, demo.url, 'websocket')
      t.after(() => Promise.all([page.close(), restoreNode(demo.url, node)]))
      await page.getByRole('button', { name: `Drain ${node}` }).click()
      await page.locator(`.node[data-node="${node}"] .state`, { hasText: /^draining$/ }).waitFor()
      await page.locator('#node', { hasText: otherNode(node) }).waitFor()
      await page.locator('#messages li.note', { hasText: /^Reconnected through node-\d/ }).waitFor()
    })
  })
})

// The other frameworks, each with its transport chosen another way: a flag, the environment, the default.
const variants: Array<{ framework: string, args: string[], env: Record<string, string>, transport: string }> = [
  { framework: 'koa', args: ['--framework=koa', '--transport=polling'], env: {}, transport: 'polling' },
  { framework: 'fastify', args: [], env: { SOCKGATE_FRAMEWORK: 'fastify', SOCKGATE_TRANSPORT: 'websocket' }, transport: 'websocket' },
  { framework: 'core', args: ['--framework=core'], env: {}, transport: 'websocket' },
]
describe('demo with other frameworks in Chromium', { skip: browserSkip }, () => {
  const chrome = useBrowser()

  for (const v of variants) {
    test(`demo: under ${v.framework}, the page at / connects with the configured transport and chats`, async (t) => {
      const demo = await startDemo(v.args, v.env)
      t.after(() => stopDemo(demo))
      const page = await chrome.browser.newPage()
      t.after(() => page.close())
      const failed: string[] = []
      page.on('response', (res) => { if (res.status() >= 400) failed.push(`${res.status()} ${res.url()}`) })
      await page.goto(`${demo.url}/`)
      assert.equal(new URL(page.url()).pathname, '/assets/index.html')
      await page.waitForLoadState('load')
      assert.deepEqual(failed, [], 'every request of the page succeeds')
      await page.locator('#state[data-state="connected"]').waitFor()
      await page.locator('#transport', { hasText: new RegExp(`^${v.transport}$`) }).waitFor()
      assert.equal(await page.locator('#framework').innerText(), v.framework)
      await page.locator('#text').fill(`hello from ${v.framework}`)
      await page.locator('#send').click()
      await page.locator('#messages li', { hasText: `hello from ${v.framework}` }).waitFor()
    })
  }
})

test('demo: with --log=json the terminal gets the gateway\'s records as pino JSON lines', async (t) => {
  const demo = await startDemo(['--log=json'])
  t.after(() => stopDemo(demo))
  const token = Math.random().toString(36).slice(2)
  const { client, node } = await connectClient(t, demo.url, { query: { token } })
  client.close()
  const record = JSON.parse(await waitForLine(demo, (l) => l.startsWith('{') && l.includes(token), 0)) as Record<string, unknown>
  assert.deepEqual({ msg: record.msg, level: record.level, pool: record.pool, name: record.name, clientAddress: record.clientAddress },
    { msg: 'tunnel closed', level: 30, pool: 'chat_nodes', name: node, clientAddress: '127.0.0.1' })
  for (const field of ['durationMs', 'bytesIn', 'bytesOut']) assert.equal(typeof record[field], 'number', field)
  assert.match(String(record.server), /^http:\/\/127\.0\.0\.1:\d+$/)
  assert.match(String(record.path), /^\/socket\.io\/\?/)
  assert.equal(typeof record.reason, 'string')
})

for (const framework of ['express', 'koa', 'fastify', 'core']) {
  describe(`demo under ${framework}`, () => {
    let demo: Demo
    before(async () => { demo = await startDemo([`--framework=${framework}`]) })
    after(() => { if (demo !== undefined) stopDemo(demo) })

    test(`demo: under ${framework}, Stop closes the node's port and Start listens on the same port again`, async (t) => {
      t.after(() => restoreNode(demo.url, 'node-1'))
      const listed = await (await fetch(`${demo.url}/demo/nodes`)).json() as NodeView[]
      const before = listed.find((n) => n.name === 'node-1')!
      // The client script is a plain file of the node: no engine.io session left behind.
      const probe = (): Promise<Response> => fetch(`${before.url}/socket.io/socket.io.js`)
      assert.deepEqual({ listening: before.listening, status: (await probe()).status }, { listening: true, status: 200 })

      const stopped = await control(demo.url, 'node-1', 'stop')
      assert.deepEqual({ status: stopped.status, listening: stopped.body.listening }, { status: 200, listening: false })
      await assert.rejects(probe(), (err: Error) => (err.cause as { code?: string } | undefined)?.code === 'ECONNREFUSED')

      const started = await control(demo.url, 'node-1', 'start')
      assert.deepEqual({ status: started.status, listening: started.body.listening, url: started.body.url }, { status: 200, listening: true, url: before.url })
      assert.equal((await probe()).status, 200)
    })

    // Last: it ends this demo.
    test(`demo: exits by itself with code 0 after SIGINT, disconnecting its clients cleanly (${framework})`, async (t) => {
      const clients: Socket[] = []
      t.after(() => { for (const c of clients) c.close() })
      const disconnects: Array<Promise<Socket.DisconnectReason>> = []
      for (const transports of [['websocket'], ['polling']]) {
        const client = connect(demo.url, { transports, reconnection: false })
        clients.push(client)
        await new Promise<void>((resolve, reject) => {
          client.once('connect', resolve)
          client.once('connect_error', reject)
        })
        disconnects.push(new Promise((resolve) => client.once('disconnect', resolve)))
      }

      demo.child.kill('SIGINT')
      const [code, signal] = await demo.exited
      assert.deepEqual({ code, signal }, { code: 0, signal: null }, demo.output.join('\n'))
      for (const reason of await Promise.all(disconnects)) assert.equal(reason, 'io server disconnect')
      assert.match(demo.output.join('\n'), /sockgate demo stopped/)
    })
  })
}

test('demo --redis: without redis-server on the machine, exits with code 1 and names the package to install', async () => {
  // An empty PATH hides redis-server; node itself is started by its full path.
  const child = spawn(process.execPath, ['--import', 'tsx', 'demo/server.ts', '--redis'], {
    cwd: ROOT,
    env: { ...process.env, PATH: '/nonexistent', PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const [code] = await once(child, 'exit') as [number | null]
  assert.equal(code, 1)
  assert.match(stderr, /--redis needs redis-server on this machine: install it with `apt-get install redis-server`/)
})

// --redis: the nodes are processes of their own joined by Redis, the gateway two sockgate/cluster workers.
describe('demo --redis, across processes', { skip: redisSkip }, () => {
  let demo: Demo
  before(async () => { demo = await startDemo(['--redis']) })
  after(() => { if (demo !== undefined) stopDemo(demo) })

  /** The PIDs the banner printed: the nodes', the workers' and redis-server's. */
  const banner = async (): Promise<{ nodes: number[], workers: number[], redis: number }> => {
    // startDemo returns at the banner's first line; the PIDs come a few lines later.
    await waitForLine(demo, (l) => l.includes('gateway workers'), 0)
    const text = demo.output.join('\n')
    const list = (re: RegExp): number[] => (re.exec(text)?.[1] ?? '').split(', ').map(Number)
    return {
      nodes: list(/the nodes are processes \(pids ([\d, ]+)\)/),
      workers: list(/gateway workers \(sockgate\/cluster, pids ([\d, ]+)\)/),
      redis: list(/redis-server at redis:\/\/127\.0\.0\.1:\d+ \(pid (\d+)\)/)[0]!,
    }
  }

  test('demo --redis: the banner names three node processes, two gateway workers and a redis-server, all running', async () => {
    const { nodes, workers, redis } = await banner()
    assert.equal(nodes.length, 3)
    assert.equal(workers.length, 2)
    for (const pid of [...nodes, ...workers, redis]) process.kill(pid, 0)
    assert.equal(new Set([...nodes, ...workers, redis, demo.child.pid]).size, 7, 'every part is a process of its own')
  })

  test('demo --redis: Drain from the page reaches both workers: no new session lands on the drained node until Start', async (t) => {
    t.after(() => restoreNode(demo.url, 'node-2'))
    assert.equal((await control(demo.url, 'node-2', 'drain')).body.drained, true)
    // Each new connection goes to one worker or the other; every one of them must know of the drain.
    for (let i = 0; i < 6; i++) assert.notEqual((await connectClient(t, demo.url)).node, 'node-2')
    assert.equal((await control(demo.url, 'node-2', 'start')).body.drained, false)
  })

  test('demo --redis: Stop from the page closes the node process\'s port and Start opens it again', async (t) => {
    t.after(() => restoreNode(demo.url, 'node-3'))
    const listed = await (await fetch(`${demo.url}/demo/nodes`)).json() as NodeView[]
    const node3 = listed.find((n) => n.name === 'node-3')!
    const probe = (): Promise<Response> => fetch(`${node3.url}/socket.io/socket.io.js`)
    assert.equal((await probe()).status, 200)
    assert.equal((await control(demo.url, 'node-3', 'stop')).body.listening, false)
    await assert.rejects(probe(), (err: Error) => (err.cause as { code?: string } | undefined)?.code === 'ECONNREFUSED')
    // Another request may reach the other worker: it knows the node is stopped too.
    for (let i = 0; i < 2; i++) {
      const again = await (await fetch(`${demo.url}/demo/nodes`)).json() as NodeView[]
      assert.equal(again.find((n) => n.name === 'node-3')?.listening, false)
    }
    assert.equal((await control(demo.url, 'node-3', 'start')).body.listening, true)
    assert.equal((await probe()).status, 200)
  })

  describe('in Chromium', { skip: browserSkip }, () => {
    const chrome = useBrowser()

    test('demo --redis: a message typed in one page reaches a page on another node process, through Redis', async (t) => {
      await chatAcross(t, chrome.browser, demo.url, 'both', 'websocket')
    })
  })

  // Last: it ends this demo.
  test('demo --redis: exits with code 0 after SIGINT and leaves no node process, worker or redis-server behind', async () => {
    const { nodes, workers, redis } = await banner()
    demo.child.kill('SIGINT')
    const [code, signal] = await demo.exited
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, demo.output.join('\n'))
    const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
    await until('processes left running', async () => [...nodes, ...workers, redis].filter(alive).length, 0)
  })
})
