/**
 * The upstream child: every origin server the proxies forward to, on one port,
 * so each proxy needs a single target URL.
 *
 * - `GET /small`   a plain keep-alive HTTP answer (64 bytes)
 * - `/ws`          a `ws` echo server (upgrade)
 * - `/socket.io/`  a Socket.IO 4 server whose `ack` event calls back with its argument
 *
 * Started by run.ts with `fork()`; reports `{ type: 'ready', port }`, then answers stats requests.
 * Optional arguments `<port> <keep-alive ms>` (defaults 0, any free port, and 120 000): chaos.ts
 * restarts a killed node on its old port and gives it Node's own keep-alive timeout.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'
import { Server as SocketIoServer } from 'socket.io'
import { serveStats, tellParent } from './measure.js'

const SMALL_BODY = Buffer.alloc(64, 'x')
const [port = 0, keepAliveMs = 120_000] = process.argv.slice(2).map(Number)

const server = createServer((req, res) => {
  // socket.io answers /socket.io/ itself before this listener runs.
  if (req.method === 'GET' && req.url === '/small') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': SMALL_BODY.length })
    res.end(SMALL_BODY)
    return
  }
  res.writeHead(404, { 'content-length': 0 })
  res.end()
})
// Proxies keep pooled connections between measurement windows; don't let the
// default 5 s keep-alive timeout close them under their feet mid-run.
server.keepAliveTimeout = keepAliveMs
server.headersTimeout = Math.max(server.headersTimeout, keepAliveMs + 1_000)

let accepted = 0
server.on('connection', () => { accepted++ })

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1 << 20 })
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }))
  ws.on('error', () => ws.terminate())
})

server.on('upgrade', (req, socket, head) => {
  if (req.url !== '/ws') return // /socket.io/ upgrades belong to engine.io's own listener
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req))
})

const io = new SocketIoServer(server, {
  serveClient: false,
  // Leave upgrades on other paths (/ws) to the listener above instead of closing them.
  destroyUpgrade: false,
  transports: ['polling', 'websocket'],
})
io.on('connection', (socket) => {
  socket.on('ack', (data: unknown, callback: unknown) => {
    if (typeof callback === 'function') callback(data)
  })
})

server.listen({ host: '127.0.0.1', port }, () => {
  serveStats(() => accepted)
  tellParent({ type: 'ready', port: (server.address() as AddressInfo).port })
})
