/**
 * Routing through a live gateway, the same for HTTP and upgrades (issue 4):
 * host exact, `*.` and RegExp; the longest path prefix; `stripPrefix`.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { WebSocket, WebSocketServer } from 'ws'
import type { RouteOptions } from '../src/index.js'
import { gatewayServer, listen } from './helpers/servers.js'
import { request } from './helpers/balance.js'

/** An upstream that reports its name and the request target it saw, over HTTP and as a WebSocket's first message. */
async function echoPathNode (t: TestContext, name: string): Promise<string> {
  const server = http.createServer((req, res) => res.end(`${name} ${req.url ?? ''}`))
  const wss = new WebSocketServer({ server })
  wss.on('connection', (ws, req) => ws.send(`${name} ${req.url ?? ''}`))
  t.after(() => {
    for (const ws of wss.clients) ws.terminate()
    wss.close()
  })
  return `http://127.0.0.1:${await listen(t, server)}`
}

const POOLS = ['exact', 'wild', 're', 'rt', 'deep', 'fallback'] as const
const ROUTES: RouteOptions[] = [
  { host: 'app.example.com', upstream: 'exact' },
  { host: '*.example.com', upstream: 'wild' },
  { host: /^api\d+\.test$/, upstream: 're' },
  { path: '/rt', upstream: 'rt', stripPrefix: true },
  { path: '/rt/deep', upstream: 'deep' },
  { path: '/', upstream: 'fallback' },
]

/** [Host, request target] → what the upstream should see: `pool target`. */
const CASES: Array<[string, string, string]> = [
  ['app.example.com', '/x', 'exact /x'],
  ['APP.example.com:8080', '/x', 'exact /x'],
  ['a.b.example.com', '/x?y=1', 'wild /x?y=1'],
  ['api12.test', '/x', 're /x'],
  ['other.test', '/rt/socket.io/?EIO=4&transport=websocket', 'rt /socket.io/?EIO=4&transport=websocket'],
  ['other.test', '/rt', 'rt /'],
  ['other.test', '/rt?x=1', 'rt /?x=1'],
  ['other.test', '/rt/deep/x', 'deep /rt/deep/x'],
  ['other.test', '/rtx', 'fallback /rtx'],
  ['example.com', '/x', 'fallback /x'],
]

async function routedGateway (t: TestContext): Promise<number> {
  const upstreams: Record<string, { servers: string[] }> = {}
  for (const pool of POOLS) upstreams[pool] = { servers: [await echoPathNode(t, pool)] }
  return (await gatewayServer(t, { upstreams, routes: ROUTES })).port
}

function firstMessage (t: TestContext, port: number, host: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers: { host } })
    t.after(() => ws.terminate())
    ws.once('message', (data) => {
      resolve(String(data))
      ws.close()
    })
    ws.once('error', reject)
  })
}

test('route: plain requests go to the pool of the matching host and longest prefix, stripped when asked', async (t) => {
  const port = await routedGateway(t)
  for (const [host, path, expected] of CASES) {
    assert.equal((await request(port, path, { headers: { host } })).body, expected, `${host}${path}`)
  }
})

test('route: upgrades are routed and stripped exactly as plain requests are', async (t) => {
  const port = await routedGateway(t)
  for (const [host, path, expected] of CASES) {
    assert.equal(await firstMessage(t, port, host, path), expected, `${host}${path}`)
  }
})
