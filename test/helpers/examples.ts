/**
 * Running the README's examples as written: each one is a child process in a
 * scratch project, its upstream URLs swapped for real Socket.IO servers and its
 * port swapped for an ephemeral one (test/helpers/example-listen.ts), with a
 * real socket.io-client talking to it.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type { TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { io as connect, type Socket } from 'socket.io-client'
import { socketIoUpstream } from './servers.js'

/** A ```ts block of a Markdown file, named by the `// ` comment on its first line. */
export interface Example {
  name: string
  code: string
}

/** The upstreams the README's examples name, in order; each is replaced by a test server. */
export const README_UPSTREAMS = ['http://127.0.0.1:5001', 'http://127.0.0.1:5002']

/** The ways a Socket.IO client can reach a server: polling only, WebSocket only, or polling then an upgrade. */
export type TransportMode = 'polling' | 'websocket' | 'default'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const TSX = import.meta.resolve('tsx')
const LISTEN_PRELOAD = new URL('./example-listen.ts', import.meta.url).href
/** An `--import` that registers the hook pointing `sockgate*` at this checkout's sources (the way Node's docs register hooks). */
const SOURCES_HOOK = new URL('./example-sources.ts', import.meta.url).href
const SOURCES_PRELOAD = 'data:text/javascript,' +
  encodeURIComponent(`import { register } from 'node:module'; register(${JSON.stringify(SOURCES_HOOK)})`)
/** How long a connect, an upgrade or an ack may take before the round trip counts as failed. */
const STEP_TIMEOUT = 5_000

/** Every ```ts block of `markdown`, in order. */
export function readmeExamples (markdown: string): Example[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map(([, code = ''], i) => ({
    name: /^\/\/\s*(.+)$/.exec(code.split('\n', 1)[0] ?? '')?.[1]?.trim() ?? `example ${i + 1}`,
    code,
  }))
}

/** `code` with each of README_UPSTREAMS replaced by the URL at the same place in `urls`. */
export function withUpstreams (code: string, urls: string[]): string {
  return README_UPSTREAMS.reduce((text, literal, i) => text.replaceAll(literal, urls[i] ?? literal), code)
}

/**
 * Socket.IO upstreams named `node-1`, `node-2`...: each acks a `hello` with its
 * name, so a client can tell which node its session is on.
 */
export async function socketIoNodes (t: TestContext, count: number): Promise<Array<{ name: string, url: string }>> {
  const nodes = []
  for (let i = 1; i <= count; i++) {
    const name = `node-${i}`
    const { io, url } = await socketIoUpstream(t)
    io.on('connection', (socket) => {
      socket.on('hello', (_msg: unknown, ack: (node: string) => void) => ack(name))
    })
    nodes.push({ name, url })
  }
  return nodes
}

/**
 * A scratch ESM project in the temp directory with the `public/` folder the
 * examples serve; removed when the test ends. `linkModules` gives it this
 * checkout's node_modules, for examples that do not install anything.
 */
export async function scratchProject (t: TestContext, { linkModules = false } = {}): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sockgate-example-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  await writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: 'example', private: true, type: 'module' }))
  await mkdir(path.join(dir, 'public'))
  await writeFile(path.join(dir, 'public', 'hello.txt'), 'hello\n')
  if (linkModules) await symlink(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir')
  return dir
}

/**
 * Write `code` into `dir` and run it with `node --import tsx` until the test
 * ends (then it is killed by its PID). Resolves with the URL it listens on.
 * `sources` resolves `sockgate` to this checkout's sources; without it,
 * `sockgate` is whatever `dir` has installed.
 */
export async function startExample (t: TestContext, dir: string, code: string, { sources = false } = {}): Promise<string> {
  const file = path.join(dir, 'example.ts')
  await writeFile(file, code)
  const preloads = ['--import', TSX, '--import', LISTEN_PRELOAD, ...(sources ? ['--import', SOURCES_PRELOAD] : [])]
  const child = spawn(process.execPath, [...preloads, file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  let output = ''
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  let listening = false
  t.after(async () => {
    const running = child.exitCode === null && child.signalCode === null
    if (running) child.kill('SIGKILL')
    const [status, signal] = await exited
    // A crash after listening would otherwise show only as failed connections.
    if (listening && !running) throw new Error(`the example exited (${status ?? signal}) while the test ran:\n${output}`)
  })
  const address = await new Promise<AddressInfo>((resolve, reject) => {
    child.on('message', (message: { listening?: AddressInfo }) => {
      if (message.listening === undefined) return
      listening = true
      resolve(message.listening)
    })
    exited.then(([status, signal]) => reject(new Error(`the example exited (${status ?? signal}) before listening:\n${output}`)), reject)
  })
  return `http://${address.address}:${address.port}`
}

/**
 * Connect a Socket.IO client to `url` in `mode` and make `trips` acked
 * `hello`s one after another (with `default`, after the upgrade to WebSocket).
 * Resolves with the node that acked each and the transport in use at the end;
 * rejects, saying why, when the connection, the upgrade or the session fails.
 */
export async function roundTrips (t: TestContext, url: string, mode: TransportMode, trips: number): Promise<{ nodes: string[], transport: string }> {
  const socket = connect(url, {
    transports: mode === 'default' ? undefined : [mode],
    reconnection: false,
    forceNew: true,
    timeout: STEP_TIMEOUT,
  })
  t.after(() => { socket.close() })
  // A session that breaks (a poll reaching a node that does not know it) ends the socket:
  // fail with the reason rather than with a timeout.
  let closing = false
  const broken = new Promise<never>((_resolve, reject) => {
    socket.once('connect_error', (err) => reject(new Error(`connect failed: ${err.message}`, { cause: err })))
    socket.once('disconnect', (reason) => { if (!closing) reject(new Error(`disconnected: ${reason}`)) })
  })
  const step = <T>(promise: Promise<T>): Promise<T> => Promise.race([promise, broken])

  await step(new Promise<void>((resolve) => socket.once('connect', resolve)))
  if (mode === 'default') await step(upgraded(socket))
  const nodes: string[] = []
  for (let i = 0; i < trips; i++) nodes.push(await step(socket.timeout(STEP_TIMEOUT).emitWithAck('hello', i) as Promise<string>))
  const transport = socket.io.engine.transport.name
  closing = true
  return { nodes, transport }
}

/** Resolves once the client's engine has upgraded from polling to WebSocket. */
function upgraded (socket: Socket): Promise<void> {
  const engine = socket.io.engine
  if (engine.transport.name === 'websocket') return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no upgrade to websocket within ${STEP_TIMEOUT} ms`)), STEP_TIMEOUT)
    engine.once('upgrade', () => { clearTimeout(timer); resolve() })
    engine.once('upgradeError', (err: Error) => { clearTimeout(timer); reject(new Error(`upgrade failed: ${err.message}`, { cause: err })) })
  })
}
