/**
 * Idle tunnels: how much the proxy's RSS grows per open, silent WebSocket.
 *
 * A base of tunnels is opened first and kept open, then the measured ones on
 * top of it, and only the second step's growth is divided. Measuring from a
 * freshly started process instead would charge first-use allocations (code,
 * pools, buffers) to the tunnels, and the heap returning startup garbage to
 * the OS can even make the figure negative. Node proxies collect garbage
 * before each reading (their child runs with --expose-gc); nginx has no GC.
 *
 * What V8's young generation took on meanwhile is left out: a burst of
 * handshakes makes it grow (up to 2 x 16 MB on 64-bit Node 20), and it keeps
 * that size whatever happens to the tunnels, so it is a cost of the process,
 * not of each tunnel. The raw growth stays in the JSON results (`rssBefore`,
 * `rssAfter`, `youngGenGrowth`).
 */
import type { ProcStats } from '../measure.js'
import type { IdleWorkload } from './types.js'
import { openMany, wsUrl } from './ws.js'
import { sleep } from './wait.js'

const BATCH = 100
const BASE_TUNNELS = 200
const SETTLE_MS = 150

export interface IdleResult {
  bytesPerTunnel: number
  rssBefore: number
  rssAfter: number
  /** Bytes the young generation grew by between the readings (0 for nginx). */
  youngGenGrowth: number
}

export async function measureIdle (
  port: number,
  stats: (cmd: 'stats' | 'gc') => Promise<ProcStats>,
  tunnels: number
): Promise<IdleResult> {
  const url = wsUrl(port)
  const base = await openMany(url, BASE_TUNNELS, BATCH)
  const measured = []
  try {
    await sleep(SETTLE_MS)
    const before = await stats('gc')
    measured.push(...await openMany(url, tunnels, BATCH))
    await sleep(SETTLE_MS)
    const after = await stats('gc')
    const youngGenGrowth = (after.youngGen ?? 0) - (before.youngGen ?? 0)
    return { bytesPerTunnel: (after.rss - before.rss - youngGenGrowth) / tunnels, rssBefore: before.rss, rssAfter: after.rss, youngGenGrowth }
  } finally {
    // Dropped without the close handshake: the figures are taken, and a thousand
    // close handshakes would only lengthen the run.
    for (const ws of [...base, ...measured]) ws.terminate()
  }
}

export const idleRss: IdleWorkload = {
  kind: 'idle',
  name: 'idle-rss',
  title: `RSS growth per idle WebSocket tunnel (1000 opened on top of ${BASE_TUNNELS} already open)`,
  tunnels: 1000,
  budgetBytes: 10 * 1024,
}
