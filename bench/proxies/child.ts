/**
 * Entry of a proxy child: `node --import tsx --expose-gc bench/proxies/child.ts <kind> <target>`.
 *
 * Each proxy runs alone in its own process so that the CPU time and RSS the
 * parent asks for belong to that proxy and nothing else. A kind whose modules
 * fail to load reports `unavailable` with the reason and exits cleanly.
 */
import { serveStats, tellParent } from '../measure.js'
import type { StartProxy } from './listen.js'
import { isNodeProxyKind } from './kinds.js'

async function main (): Promise<void> {
  const [kind, target] = process.argv.slice(2)
  if (!kind || !target || !isNodeProxyKind(kind)) {
    tellParent({ type: 'unavailable', reason: `unknown proxy kind ${String(kind)}` })
    process.exit(0)
  }
  let start: StartProxy
  let port: number
  try {
    ({ start } = await import(`./${kind}.js`) as { start: StartProxy })
    port = await start(target)
  } catch (err) {
    tellParent({ type: 'unavailable', reason: describe(err) })
    process.exit(0)
  }
  serveStats()
  tellParent({ type: 'ready', port })
}

function describe (err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: string }).code
    return (code ? `${code}: ` : '') + err.message.split('\n')[0]
  }
  return String(err)
}

// A proxy bug must show up as errors in the figures, not kill the child mid-window.
// Only the first few are printed: a broken path can throw once per operation.
let reported = 0
function report (what: string, err: unknown): void {
  if (++reported <= 5) console.error(`[proxy ${process.argv[2]}] ${what}:`, err)
}
process.on('uncaughtException', (err) => report('uncaught exception', err))
process.on('unhandledRejection', (err) => report('unhandled rejection', err))

await main()
