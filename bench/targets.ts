/**
 * Targets: what a workload's clients connect to. `direct` is the upstream
 * itself (the limit), the rest are proxies in front of it, each in its own
 * process so its CPU and memory can be read alone.
 */
import { fileURLToPath } from 'node:url'
import { startNodeChild } from './children.js'
import type { ProcStats } from './measure.js'
import { isNodeProxyKind, NODE_PROXY_KINDS } from './proxies/kinds.js'
import { startNginx } from './proxies/nginx.js'

/** sockgate's core through sockgate/cluster, with 1 and 2 workers: `sockgate-cluster-<workers>`. */
export const CLUSTER_TARGETS = ['sockgate-cluster-1', 'sockgate-cluster-2'] as const

/** Every target, in the order they run within a round. */
export const ALL_TARGETS = ['direct', 'nginx', ...NODE_PROXY_KINDS, ...CLUSTER_TARGETS] as const

const CHILD_ENTRY = fileURLToPath(new URL('./proxies/child.ts', import.meta.url))
const CLUSTER_ENTRY = fileURLToPath(new URL('./proxies/cluster-child.ts', import.meta.url))

export interface Target {
  name: string
  /** Port on 127.0.0.1 the clients connect to. */
  port: number
  /** The proxy's own figures; absent for `direct`. `gc` collects garbage first where the proxy can. */
  stats?: (cmd?: 'stats' | 'gc') => Promise<ProcStats>
  /** Node proxies only: start a CPU profile, or stop it and write it to `file` (the bench's `--cpu-prof`). */
  profile?: (action: 'start' | 'stop', file?: string) => Promise<void>
  stop: () => Promise<void>
}

export type TargetStart = { ok: true, target: Target } | { ok: false, name: string, reason: string }

/** Starts one target in front of the upstream port. Never throws: a failure comes back as a reason. */
export async function startTarget (name: string, upstreamPort: number): Promise<TargetStart> {
  try {
    if (name === 'direct') {
      return { ok: true, target: { name, port: upstreamPort, stop: async () => {} } }
    }
    if (name === 'nginx') {
      const nginx = await startNginx(upstreamPort)
      if (typeof nginx === 'string') return { ok: false, name, reason: nginx }
      return {
        ok: true,
        target: { name, port: nginx.port, stats: async () => nginx.stats(), stop: () => nginx.stop() },
      }
    }
    const clusterWorkers = /^sockgate-cluster-(\d+)$/.exec(name)?.[1]
    if (isNodeProxyKind(name) || clusterWorkers !== undefined) {
      const upstream = `http://127.0.0.1:${upstreamPort}`
      const started = clusterWorkers === undefined
        ? await startNodeChild(CHILD_ENTRY, [name, upstream])
        : await startNodeChild(CLUSTER_ENTRY, [clusterWorkers, upstream])
      if (!started.ok) return { ok: false, name, reason: started.reason }
      const { child, port } = started
      return {
        ok: true,
        target: {
          name,
          port,
          stats: (cmd) => child.stats(cmd),
          profile: async (action, file) => { await child.stats(action === 'start' ? 'profile-start' : 'profile-stop', file) },
          stop: () => child.stop(),
        },
      }
    }
    return { ok: false, name, reason: `unknown target (known: ${ALL_TARGETS.join(', ')})` }
  } catch (err) {
    return { ok: false, name, reason: err instanceof Error ? err.message : String(err) }
  }
}
