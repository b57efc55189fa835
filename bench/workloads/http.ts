/** Keep-alive HTTP GETs through an undici Pool of 50 connections, 50 requests in flight. */
import { Pool } from 'undici'
import { PEAK_RSS_GOAL_MB, type LoadWorkload, type Limits, type Session } from './types.js'
import { sleep } from './wait.js'

const CONCURRENCY = 50
const REQUEST_TIMEOUT_MS = 5_000

async function startGets (port: number, limits: Limits): Promise<Session> {
  const pool = new Pool(`http://127.0.0.1:${port}`, {
    connections: CONCURRENCY,
    pipelining: 1,
    headersTimeout: REQUEST_TIMEOUT_MS,
    bodyTimeout: REQUEST_TIMEOUT_MS,
  })
  let ops = 0
  let errors = 0
  const state = { stopped: false }
  const deadline = Date.now() + limits.maxMs

  const loop = async (): Promise<void> => {
    while (!state.stopped && ops < limits.maxOps && Date.now() < deadline) {
      try {
        const { statusCode, body } = await pool.request({ path: '/small', method: 'GET' })
        await body.dump()
        if (statusCode === 200) ops++
        else errors++
      } catch {
        errors++
        await sleep(20)
      }
    }
  }
  const loops = Array.from({ length: CONCURRENCY }, loop)

  return {
    get ops () { return ops },
    get errors () { return errors },
    async stop () {
      state.stopped = true
      await Promise.all(loops)
      await pool.close()
    },
  }
}

export const httpGet: LoadWorkload = {
  kind: 'load',
  name: 'http-get',
  title: 'Keep-alive HTTP GET (64-byte body), 50 connections, 50 in flight',
  unit: 'req/s',
  goals: { vsNginx: 3, vsNodePeers: 1, peakRssMb: PEAK_RSS_GOAL_MB },
  limits: { maxOps: 5_000_000, maxMs: 60_000 },
  start: startGets,
}
