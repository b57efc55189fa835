import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { createGateway, type TunnelOpenEvent } from '../src/index.js'
import { browserSkip, useBrowser } from './helpers/chromium.js'
import { KEY_CERT } from './helpers/http2.js'
import { socketIoUpstream } from './helpers/servers.js'

const PAGE = `<!doctype html><title>h2</title><script src="/socket.io/socket.io.js"></script>
<script>
  const socket = io({ transports: ['websocket'] })
  socket.on('connect', () => socket.emit('echo', 'hello from the page', (answer) => { window.answer = answer }))
</script>`

describe('http2 in Chromium', { skip: browserSkip }, () => {
  // The test certificate's CA is not in Chromium's store: the page is trusted by flag (loopback only).
  const chrome = useBrowser(['--ignore-certificate-errors'])

  test('http2: a page over HTTP/2 opens its Socket.IO WebSocket as a stream of the same connection (RFC 8441)', async (t) => {
    const upstream = await socketIoUpstream(t)
    upstream.io.on('connection', (s) => s.on('echo', (text: string, ack: (a: string) => void) => ack(`echo: ${text}`)))
    const gateway = createGateway({ target: upstream.url })
    t.after(() => gateway.close())
    const server = http2.createSecureServer({ ...KEY_CERT, allowHTTP1: true, settings: { enableConnectProtocol: true } })
    const versions: string[] = []
    server.on('request', (req, res) => {
      versions.push(`${req.httpVersion} ${req.url}`)
      if (req.url === '/') res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE)
      else gateway.handleRequest(req, res)
    })
    gateway.attachHttp2(server)
    gateway.attach(server)
    const sessions = new Set<http2.ServerHttp2Session>()
    server.on('session', (s) => sessions.add(s))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.after(() => new Promise<void>((resolve) => {
      for (const s of sessions) s.destroy()
      server.close(() => resolve())
    }))
    const opened: TunnelOpenEvent[] = []
    gateway.on('tunnel:open', (e) => opened.push(e))

    const page = await chrome.browser.newPage()
    await page.goto(`https://127.0.0.1:${(server.address() as AddressInfo).port}/`)
    await page.waitForFunction(() => (globalThis as { answer?: string }).answer !== undefined, undefined, { timeout: 10_000 })
    assert.equal(await page.evaluate(() => (globalThis as { answer?: string }).answer), 'echo: hello from the page')
    assert.deepEqual(versions.filter((v) => !v.startsWith('2.0')), [], 'a request came over HTTP/1.1')
    assert.equal(opened.length, 1)
    assert.equal(opened[0]!.http2, true, 'the WebSocket did not come over HTTP/2')
    assert.match(opened[0]!.path, /^\/socket\.io\/\?EIO=4&transport=websocket/)
    assert.equal(sessions.size, 1, 'the page and its socket did not share one connection')
    // Closed now, before the server: Socket.IO would otherwise reconnect while the server waits for its sessions.
    await page.close()
  })
})
