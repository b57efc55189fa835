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

/** A workload measured as operations per second over a window. */
export interface LoadWorkload {
  kind: 'load'
  name: string
  title: string
  /** What one operation is, for the table header ("round trips/s"). */
  unit: string
  /** Payload bytes per operation, when the headline figure is MB/s instead of ops/s. */
  bytesPerOp?: number
  /** Budget for sockgate's CPU seconds per 100k operations (docs/benchmarks.md). */
  cpuBudget: number
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
