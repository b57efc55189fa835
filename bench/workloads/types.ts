/** Shapes shared by the workloads and the orchestrator. */

/** Hard bounds a session enforces on itself, whether or not stop() is ever called. */
export interface Limits {
  /** Stop after this many operations. */
  maxOps: number
  /** Stop this many milliseconds after the session started. */
  maxMs: number
}

/** A running load: its loops started when start() resolved and go on until stop() or a limit. */
export interface Session {
  /** Operations completed since the session started. */
  readonly ops: number
  /** Failed operations (errors, timeouts, unexpected closes) since the session started. */
  readonly errors: number
  /** Ends the loops, lets in-flight operations finish briefly, closes every connection. */
  stop: () => Promise<void>
}

/**
 * Goals for the core (issue 10). Its proxy CPU per operation is compared
 * with other targets of the same run, since absolute times move with the
 * machine: at most `vsNginx` times nginx's, at most `vsNodePeers` times the
 * cheapest Node peer's (http-proxy, http-proxy-middleware). Peak RSS is
 * memory, not time, so its goal is absolute.
 */
export interface SockgateGoals {
  vsNginx?: number
  vsNodePeers?: number
  peakRssMb?: number
}

/** Peak RSS under load the core should stay within on every load workload (issue 10). */
export const PEAK_RSS_GOAL_MB = 60

/** A workload measured as operations per second over a window. */
export interface LoadWorkload {
  kind: 'load'
  name: string
  title: string
  /** What one operation is, for the table header ("round trips/s"). */
  unit: string
  /** Payload bytes per operation, when the headline figure is MB/s instead of ops/s. */
  bytesPerOp?: number
  /** sockgate's goals for this workload, as ratios to figures of the same run (issue 10, docs/benchmarks.md). */
  goals: SockgateGoals
  limits: Limits
  start: (port: number, limits: Limits) => Promise<Session>
}

/** The idle-tunnel memory workload: RSS growth of the proxy per open idle WebSocket. */
export interface IdleWorkload {
  kind: 'idle'
  name: string
  title: string
  tunnels: number
  /** Budget for sockgate's RSS per idle tunnel, in bytes. */
  budgetBytes: number
}

export type Workload = LoadWorkload | IdleWorkload
