/**
 * Idle tunnels: open many WebSockets through the proxy, leave them silent, and
 * divide the proxy's RSS growth by their number. Node proxies collect garbage
 * before each reading (their child runs with --expose-gc); nginx has no GC.
 */
import type { ProcStats } from '../measure.js'
import type { IdleWorkload } from './types.js'
import { closeWs, openMany, wsUrl } from './ws.js'
import { sleep } from './wait.js'

const BATCH = 100
/** Tunnels opened and closed first, so one-time allocations (code, pools) are not charged to the measured ones. */
const WARM_TUNNELS = 100
const SETTLE_MS = 300

export interface IdleResult {
  bytesPerTunnel: number
  rssBefore: number
  rssAfter: number
}

export async function measureIdle (
  port: number,
  stats: (cmd: 'stats' | 'gc') => Promise<ProcStats>,
  tunnels: number
): Promise<IdleResult> {
  const url = wsUrl(port)
  await Promise.all((await openMany(url, WARM_TUNNELS, BATCH)).map(closeWs))
  await sleep(SETTLE_MS)
  const before = await stats('gc')
  const sockets = await openMany(url, tunnels, BATCH)
  try {
    await sleep(SETTLE_MS)
    const after = await stats('gc')
    return { bytesPerTunnel: (after.rss - before.rss) / tunnels, rssBefore: before.rss, rssAfter: after.rss }
  } finally {
    await Promise.all(sockets.map(closeWs))
  }
}

export const idleRss: IdleWorkload = {
  kind: 'idle',
  name: 'idle-rss',
  title: 'RSS growth per idle WebSocket tunnel (1000 open at once)',
  tunnels: 1000,
  budgetBytes: 20 * 1024,
}
