/** Every workload, in the order a run measures them. */
import { httpGet } from './http.js'
import { idleRss } from './idle.js'
import { sioPolling, sioWebsocket } from './socketio.js'
import type { Workload } from './types.js'
import { wsBulk, wsEcho, wsHandshake } from './ws.js'

export const WORKLOADS: readonly Workload[] = [wsEcho, wsBulk, httpGet, wsHandshake, sioPolling, sioWebsocket, idleRss]
