/**
 * Parent side of a Node child (the upstreams or one proxy): fork it, wait for
 * its port, ask it for stats, stop it by its own PID.
 *
 * Children run compiled JavaScript with no loader, as an app runs in
 * production: the TypeScript loader (tsx) adds a module-hooks thread and
 * tens of MB of RSS to every process, and a heap the size of a second
 * library, which changes how V8 collects garbage under load. The project
 * and the bench are compiled once per run into `.bench-build/` (inside the
 * project, so packages resolve from its node_modules).
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ChildEvent, ProcStats, StatsReply, StatsRequest } from './measure.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BUILD = join(ROOT, '.bench-build')
let built = false

/** Compile src/, adapters/ and bench/ into `.bench-build/` (once per run). */
function buildOnce (): void {
  if (built) return
  mkdirSync(BUILD, { recursive: true })
  const tsconfig = join(BUILD, 'tsconfig.json')
  writeFileSync(tsconfig, JSON.stringify({
    extends: join(ROOT, 'tsconfig.json'),
    compilerOptions: { rootDir: ROOT, outDir: BUILD, noEmit: false, declaration: false, sourceMap: false, incremental: true, tsBuildInfoFile: join(BUILD, 'tsbuildinfo') },
    include: ['src', 'adapters', 'bench'].map((d) => join(ROOT, d)),
  }))
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  execFileSync(process.execPath, [tsc, '-p', tsconfig], { stdio: 'inherit' })
  built = true
}

/** The compiled file of a `.ts` entry of this project. */
function compiledEntry (entry: string): string {
  buildOnce()
  return join(BUILD, relative(ROOT, entry).replace(/\.ts$/, '.js'))
}

const READY_TIMEOUT_MS = 30_000
const REQUEST_TIMEOUT_MS = 10_000
const STOP_TIMEOUT_MS = 3_000
const TAIL_CHARS = 4_000

export type StartResult =
  | { ok: true, child: NodeChild, port: number }
  | { ok: false, reason: string }

/** A running Node child that speaks measure.ts's stats protocol. */
export class NodeChild {
  readonly #proc: ChildProcess
  readonly #pending = new Map<number, { resolve: (stats: ProcStats) => void, reject: (err: Error) => void }>()
  #nextId = 1
  /** Last characters the child wrote to stdout/stderr, for error reports. */
  tail = ''

  constructor (proc: ChildProcess) {
    this.#proc = proc
    proc.on('message', (msg: StatsReply) => {
      if (typeof msg?.id !== 'number') return
      this.#pending.get(msg.id)?.resolve(msg.stats)
      this.#pending.delete(msg.id)
    })
    // A child that dies mid-window fails that window now, not after the request timeout.
    proc.on('exit', (code, signal) => {
      for (const { reject } of this.#pending.values()) reject(new Error(`child ${this.pid} exited (${signal ?? code})`))
      this.#pending.clear()
    })
    const keep = (chunk: Buffer): void => { this.tail = (this.tail + chunk.toString()).slice(-TAIL_CHARS) }
    proc.stdout?.on('data', keep)
    proc.stderr?.on('data', keep)
  }

  get pid (): number | undefined { return this.#proc.pid }

  get alive (): boolean { return this.#proc.exitCode === null && this.#proc.signalCode === null }

  /**
   * CPU and memory so far; with `gc`, after a full collection (the child runs
   * with --expose-gc); with `profile-start` / `profile-stop`, after starting or
   * stopping a CPU profile that is then written to `file`.
   */
  stats (cmd: StatsRequest['cmd'] = 'stats', file?: string): Promise<ProcStats> {
    if (!this.alive || !this.#proc.connected) return Promise.reject(new Error(`child ${this.pid} has exited`))
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`child ${this.pid} did not answer '${cmd}' within ${REQUEST_TIMEOUT_MS} ms`))
      }, REQUEST_TIMEOUT_MS)
      this.#pending.set(id, {
        resolve: (stats) => { clearTimeout(timer); resolve(stats) },
        reject: (err) => { clearTimeout(timer); reject(err) },
      })
      const request: StatsRequest = { id, cmd, file }
      this.#proc.send(request)
    })
  }

  /** SIGTERM, then SIGKILL if it is still there after a few seconds. Only ever this child's PID. */
  async stop (): Promise<void> {
    if (!this.alive) return
    const exited = new Promise<void>((resolve) => this.#proc.once('exit', () => resolve()))
    this.#proc.kill('SIGTERM')
    const timer = setTimeout(() => { if (this.alive) this.#proc.kill('SIGKILL') }, STOP_TIMEOUT_MS)
    await exited
    clearTimeout(timer)
  }
}

/**
 * Forks `entry` (a .ts file of this project, run compiled, with --expose-gc so
 * RSS can be read after a collection) and waits for its `ready` or
 * `unavailable` event.
 */
export function startNodeChild (entry: string, args: string[]): Promise<StartResult> {
  const proc = fork(compiledEntry(entry), args, {
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  const child = new NodeChild(proc)
  return new Promise((resolve) => {
    const finish = (result: StartResult): void => {
      clearTimeout(timer)
      proc.off('message', onMessage)
      proc.off('exit', onExit)
      if (!result.ok) child.stop().catch(() => {})
      resolve(result)
    }
    const onMessage = (msg: ChildEvent): void => {
      if (msg?.type === 'ready') finish({ ok: true, child, port: msg.port })
      else if (msg?.type === 'unavailable') finish({ ok: false, reason: msg.reason })
    }
    const onExit = (code: number | null, signal: string | null): void => {
      const last = child.tail.trim().split('\n').slice(-3).join(' | ')
      finish({ ok: false, reason: `exited (${signal ?? code}) before listening${last ? `: ${last}` : ''}` })
    }
    const timer = setTimeout(() => finish({ ok: false, reason: `not ready within ${READY_TIMEOUT_MS} ms` }), READY_TIMEOUT_MS)
    proc.on('message', onMessage)
    proc.on('exit', onExit)
  })
}
