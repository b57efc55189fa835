/**
 * Small upstreams and clients the adapter-specific tests share.
 */
import http from 'node:http'
import type { TestContext } from 'node:test'
import { WebSocket, WebSocketServer } from 'ws'
import { listen } from '../helpers/servers.js'

/** An upstream that accepts any HTTP request and any WebSocket, and records the path of each, by kind. */
export async function recordingUpstream (t: TestContext, name = 'up'): Promise<{ url: string, http: string[], ws: string[] }> {
  const seen = { http: [] as string[], ws: [] as string[] }
  const server = http.createServer((req, res) => {
    seen.http.push(req.url ?? '')
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`${name} ${req.url ?? ''}`)
  })
  const wss = new WebSocketServer({ noServer: true })
  server.on('upgrade', (req, socket, head) => {
    seen.ws.push(req.url ?? '')
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data) => ws.send(`${name}: ${String(data)}`))
    })
  })
  t.after(() => {
    for (const c of wss.clients) c.terminate()
    wss.close()
  })
  const port = await listen(t, server)
  return { url: `http://127.0.0.1:${port}`, ...seen }
}

/**
 * Open a WebSocket to `url`, send `message`, and resolve with the first
 * reply; or with `HTTP <status>` when the handshake is refused.
 */
export function wsRoundTrip (t: TestContext, url: string, message = 'hi', opts: { ca?: string | Buffer, origin?: string } = {}): Promise<string> {
  const ws = new WebSocket(url.replace(/^http/, 'ws'), opts)
  t.after(() => ws.terminate())
  return new Promise((resolve, reject) => {
    ws.once('open', () => ws.send(message))
    ws.once('message', (data) => {
      resolve(String(data))
      ws.close()
    })
    ws.once('unexpected-response', (_req, res) => {
      resolve(`HTTP ${res.statusCode ?? 0}`)
      res.resume()
      ws.terminate()
    })
    ws.once('error', reject)
  })
}

/** The warnings `process.emitWarning()` gives while the test runs. */
export function captureWarnings (t: TestContext): Array<Error & { code?: string }> {
  const warnings: Array<Error & { code?: string }> = []
  const onWarning = (w: Error & { code?: string }): void => { warnings.push(w) }
  process.on('warning', onWarning)
  t.after(() => { process.off('warning', onWarning) })
  return warnings
}
