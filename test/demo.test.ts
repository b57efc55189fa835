import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, describe, test, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type Page } from 'playwright-core'
import { io as connect, type Socket } from 'socket.io-client'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync']
/** Set to a directory to keep a screenshot of the chat page from each browser test. */
const SCREENSHOT_DIR = process.env.SOCKGATE_DEMO_SCREENSHOTS
/** Pages opened, at most, to find two on different nodes; the demo balances round-robin, so the second page usually is. */
const MAX_PAGES = 12

// Without Chromium the browser tests are skipped on a developer machine, never on CI.
const browserSkip = existsSync(CHROMIUM) || process.env.CI === 'true'
  ? false
  : `Chromium not found at ${CHROMIUM}: install it with \`apt-get install chromium\` to run the browser tests`

interface Demo {
  child: ChildProcess
  url: string
  output: string[]
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
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk))
  const lines = createInterface({ input: child.stdout! })
  const url = await new Promise<string>((resolve, reject) => {
    lines.on('line', (line) => {
      output.push(line)
      const match = /^sockgate demo listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line)
      if (match !== null) resolve(match[1]!)
    })
    exited.then(([code, signal]) => reject(new Error(`demo exited (${code ?? signal}) before listening:\n${output.join('\n')}`)), reject)
  })
  return { child, url, output, exited }
}

/** Kill the demo by its PID if a test left it running. */
function stopDemo (demo: Demo): void {
  if (demo.child.exitCode === null && demo.child.signalCode === null) demo.child.kill('SIGKILL')
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

  if (SCREENSHOT_DIR !== undefined) {
    await mkdir(SCREENSHOT_DIR, { recursive: true })
    const file = path.join(SCREENSHOT_DIR, `demo-${transport}.png`)
    await b.screenshot({ path: file })
    t.diagnostic(`screenshot: ${file}`)
  }
}

describe('demo with the default flags (express, both transports)', () => {
  let demo: Demo
  before(async () => { demo = await startDemo() })
  after(() => { if (demo !== undefined) stopDemo(demo) })

  test('demo: the status page lists the three Socket.IO nodes', async () => {
    const res = await fetch(`${demo.url}/sockgate/status?format=json`)
    assert.equal(res.status, 200)
    const body = await res.json() as { pools: Record<string, { servers: Array<{ url: string }> }> }
    const printed = demo.output.join('\n').match(/node-\d at (http:\/\/127\.0\.0\.1:\d+)/g)?.map((line) => line.split(' at ')[1])
    assert.deepEqual(body.pools.chat_nodes?.servers.map((s) => s.url).sort(), printed?.sort())
    assert.equal(printed?.length, 3)
  })

  describe('in Chromium', { skip: browserSkip }, () => {
    let browser: Browser
    before(async () => {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
    })
    after(() => browser?.close())

    test('demo: a message typed in one page appears in a page on another node over websocket', async (t) => {
      await chatAcross(t, browser, demo.url, 'websocket', 'websocket')
    })

    test('demo: a message typed in one page appears in a page on another node with polling only', async (t) => {
      await chatAcross(t, browser, demo.url, 'polling', 'polling')
    })

    test('demo: pages that start on polling upgrade to websocket on their own node and chat across nodes', async (t) => {
      await chatAcross(t, browser, demo.url, 'both', 'websocket')
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
  let browser: Browser
  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
  })
  after(() => browser?.close())

  for (const v of variants) {
    test(`demo: under ${v.framework}, the page at / connects with the configured transport and chats`, async (t) => {
      const demo = await startDemo(v.args, v.env)
      t.after(() => stopDemo(demo))
      const page = await browser.newPage()
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

for (const framework of ['express', 'koa', 'fastify', 'core']) {
  test(`demo: exits by itself with code 0 after SIGINT, disconnecting its clients cleanly (${framework})`, async (t) => {
    const demo = await startDemo([`--framework=${framework}`])
    t.after(() => stopDemo(demo))
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
}
