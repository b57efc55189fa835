import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingHttpHeaders, ServerHttp2Session } from 'node:http2'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import sockgate from '../adapters/fastify.js'
import type { TunnelOpenEvent } from '../src/index.js'
import { bodyOf, extendedConnect, frames, h2Session, KEY_CERT } from './helpers/http2.js'
import { eventually, socketIoUpstream } from './helpers/servers.js'

/**
 * Listen on loopback; when the test ends, end the server's HTTP/2 sessions and close the app (a session still
 * open would hold app.close() for Fastify's http2SessionTimeout).
 */
async function listenClosingSessions (t: import('node:test').TestContext, app: ReturnType<typeof Fastify>): Promise<void> {
  const sessions = new Set<ServerHttp2Session>()
  app.server.on('session', (s: ServerHttp2Session) => sessions.add(s))
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => {
    for (const s of sessions) s.destroy()
    return app.close()
  })
}

/** A Fastify app over HTTP/2 that offers WebSockets on it, with the plugin in front of a Socket.IO node. */
async function fastifyH2 (t: import('node:test').TestContext, host?: string) {
  const upstream = await socketIoUpstream(t)
  const app = Fastify({ http2: true, https: { ...KEY_CERT, allowHTTP1: true, settings: { enableConnectProtocol: true } } })
  await app.register(sockgate, { upstreams: { io: { servers: [upstream.url] } }, routes: [{ host, path: '/socket.io/', upstream: 'io' }] })
  app.get('/', async () => 'the page')
  await listenClosingSessions(t, app)
  return { app, url: `https://127.0.0.1:${(app.server.address() as AddressInfo).port}` }
}

test('http2 fastify: an app with http2: true and the setting takes Socket.IO WebSockets over HTTP/2', async (t) => {
  const { app, url } = await fastifyH2(t)
  const opened: TunnelOpenEvent[] = []
  app.sockgate.on('tunnel:open', (e) => opened.push(e))
  const { stream, headers } = await extendedConnect(await h2Session(t, url), '/socket.io/?EIO=4&transport=websocket')
  assert.equal(headers[':status'], 200)
  const ws = frames(stream)
  // engine.io's open packet ("0{...sid...}") is the node's first frame.
  assert.ok(await eventually(() => ws.messages.length > 0), 'no engine.io open packet')
  assert.match(ws.messages[0]!, /^0\{"sid":/)
  await ws.send('40')
  assert.ok(await eventually(() => ws.messages.some((m) => m.startsWith('40{"sid":'))), `no Socket.IO connect answer: ${ws.messages.join(' | ')}`)
  assert.equal(opened.length, 1)
  assert.equal(opened[0]!.http2, true)
  stream.close()
})

test('http2 fastify: Socket.IO long-polling (routed by :authority) and the app\'s own routes answer over HTTP/2', async (t) => {
  const { url } = await fastifyH2(t, '127.0.0.1')
  const session = await h2Session(t, url)
  const poll = session.request({ ':path': '/socket.io/?EIO=4&transport=polling' })
  const headers = await new Promise<IncomingHttpHeaders>((resolve) => poll.once('response', resolve))
  assert.equal(headers[':status'], 200)
  assert.match(await bodyOf(poll), /^0\{"sid":/)
  const page = session.request({ ':path': '/' })
  assert.equal(await bodyOf(page), 'the page')
})

test('http2 fastify: an HTTP/2 app without the setting still proxies polling, and refuses nothing at registration', async (t) => {
  const upstream = await socketIoUpstream(t)
  const app = Fastify({ http2: true, https: KEY_CERT })
  await app.register(sockgate, { target: upstream.url })
  await listenClosingSessions(t, app)
  const session = await h2Session(t, `https://127.0.0.1:${(app.server.address() as AddressInfo).port}`)
  assert.equal(session.remoteSettings.enableConnectProtocol, false)
  const poll = session.request({ ':path': '/socket.io/?EIO=4&transport=polling' })
  assert.match(await bodyOf(poll), /^0\{"sid":/)
})
