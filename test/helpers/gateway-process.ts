import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import type { TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { GatewayProcessConfig } from '../fixtures/gateway-process.js'

const FIXTURE = fileURLToPath(new URL('../fixtures/gateway-process.ts', import.meta.url))
/** How long a gateway process may take to print its port (tsx compiles on the fly). */
const START_DEADLINE_MS = 20_000
/** How long SIGTERM may take before SIGKILL. */
const STOP_DEADLINE_MS = 3_000

/** A gateway running in its own process. */
export interface GatewayProcess {
  readonly pid: number
  readonly port: number
  readonly url: string
  /** Everything it wrote to stdout and stderr. */
  readonly output: string[]
  /** SIGTERM to its PID (SIGKILL if it lingers); resolves once it has exited. */
  stop (): Promise<void>
}

/**
 * Start a gateway in a separate Node process with `config` and resolve once
 * it listens. It is stopped by its PID when the test ends, passed or failed.
 */
export async function gatewayProcess (t: TestContext, config: GatewayProcessConfig): Promise<GatewayProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    env: { ...process.env, SOCKGATE_GATEWAY_PROCESS: JSON.stringify(config) },
    // stdin stays open: the fixture exits by itself when it closes, should this process die first.
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  const pid = child.pid
  if (pid === undefined) throw new Error('the gateway process could not be spawned')
  const exited = once(child, 'exit')
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const kill = setTimeout(() => process.kill(pid, 'SIGKILL'), STOP_DEADLINE_MS)
    process.kill(pid, 'SIGTERM')
    await exited
    clearTimeout(kill)
  }
  t.after(stop)

  const output: string[] = []
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk))
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway process ${pid} did not listen within ${START_DEADLINE_MS} ms:\n${output.join('\n')}`)), START_DEADLINE_MS)
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line)
      const match = /^gateway listening on (\d+)$/.exec(line)
      if (match === null) return
      clearTimeout(timer)
      resolve(Number(match[1]))
    })
    exited.then(([code, signal]) => {
      clearTimeout(timer)
      reject(new Error(`gateway process ${pid} exited (${String(code ?? signal)}) before listening:\n${output.join('\n')}`))
    }, reject)
  })
  return { pid, port, url: `http://127.0.0.1:${port}`, output, stop }
}
