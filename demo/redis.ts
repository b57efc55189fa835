/**
 * A throw-away redis-server on loopback, started and stopped by PID: the
 * demo's `--redis` mode runs one for its Socket.IO nodes, and the tests
 * (through test/helpers/redis.ts) one per test that needs Redis.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import net from 'node:net'

/** Where Debian's `redis-server` package puts the binary (and `$PATH` usually has it). */
const REDIS_SERVER = 'redis-server'
/** How long a fresh redis-server may take to answer PING. */
const READY_DEADLINE_MS = 10_000

/** True when `redis-server` can be run on this machine. */
export const redisServerFound = spawnSync(REDIS_SERVER, ['--version'], { stdio: 'ignore' }).status === 0

/** What to tell someone without it. */
export const REDIS_INSTALL_HINT = 'install it with `apt-get install redis-server`'

/** A real redis-server started on loopback, stopped by its PID. */
export interface RedisServer {
  /** `redis://127.0.0.1:PORT`, for ioredis and node-redis alike. */
  readonly url: string
  readonly port: number
  readonly pid: number
  stop (): Promise<void>
}

/** A free loopback port: bound on port 0, then released for redis-server to take. */
async function freePort (): Promise<number> {
  const probe = net.createServer()
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as net.AddressInfo
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  return port
}

/** Resolves once the server at `port` answers PING with PONG. */
async function untilReady (port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + READY_DEADLINE_MS
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode} before it was ready`)
    const pong = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1')
      socket.setTimeout(500, () => socket.destroy())
      socket.once('connect', () => socket.write('PING\r\n'))
      socket.once('data', (chunk) => {
        socket.destroy()
        resolve(chunk.toString().startsWith('+PONG'))
      })
      socket.once('close', () => resolve(false))
      socket.once('error', () => {})
    })
    if (pong) return
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING within ${READY_DEADLINE_MS} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/**
 * Start a throw-away redis-server on 127.0.0.1: no persistence, no config
 * file, its own port. Stop it with `stop()` (SIGTERM to its PID, then
 * SIGKILL if it lingers).
 */
export async function startRedis (): Promise<RedisServer> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort()
    const child = spawn(REDIS_SERVER, [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--protected-mode', 'yes', '--loglevel', 'warning',
    ], { stdio: ['ignore', 'ignore', 'pipe'] })
    if (child.pid === undefined) throw new Error(`redis-server could not be started: is it installed? ${REDIS_INSTALL_HINT}`)
    try {
      await untilReady(port, child)
    } catch (err) {
      child.kill('SIGKILL')
      // Someone else took the port between our probe and redis-server's bind: try another.
      if (attempt < 3) continue
      throw err
    }
    const pid = child.pid
    return {
      url: `redis://127.0.0.1:${port}`,
      port,
      pid,
      stop: () => new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        const kill = setTimeout(() => child.kill('SIGKILL'), 2000)
        child.once('exit', () => {
          clearTimeout(kill)
          resolve()
        })
        process.kill(pid, 'SIGTERM')
      }),
    }
  }
}
