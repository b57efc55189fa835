/**
 * TLS end to end, on every adapter: the app on `https.createServer` (or
 * Fastify's `https` option) serves wss:// and polling over TLS, to upstreams
 * that are themselves https:/wss: and trusted through the pool's `tls.ca`,
 * and the upstream is told `X-Forwarded-Proto: https`. The certificate is
 * test/fixtures/tls (a test CA and a server certificate for 127.0.0.1).
 */
import https from 'node:https'
import { readFileSync } from 'node:fs'
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import request from 'supertest'
import { buildExpress, buildFastify, buildKoa, type AppUnderTest, type BuildApp } from './apps.js'
import { connect, echoUpstream, socketIoNode, type EchoAck } from './scenarios.js'

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/tls/${name}`, import.meta.url), 'utf8')
const ca = fixture('ca.pem')
const key = fixture('key.pem')
const cert = fixture('cert.pem')

/** An https app in front of a Socket.IO node on https, trusted through `tls.ca` (none when `upstreamCa` is null). */
async function tlsApp (t: TestContext, build: BuildApp, upstreamCa: string | null = ca): Promise<AppUnderTest> {
  const sio = await socketIoNode(t, 'tls-node', https.createServer({ key, cert }), 'https')
  const echo = await echoUpstream(t)
  return await build(t, {
    tls: { key, cert },
    gateway: {
      upstreams: {
        sio: { servers: [sio.url], ...(upstreamCa === null ? {} : { tls: { ca: upstreamCa } }) },
        echo: { servers: [echo.url] },
      },
      routes: [{ path: '/socket.io/', upstream: 'sio' }],
    },
  })
}

for (const [adapter, build] of [['express', buildExpress], ['koa', buildKoa], ['fastify', buildFastify]] as const) {
  test(`tls: ${adapter} on https tunnels a websocket-only Socket.IO client over wss:// to a wss:// upstream, which sees X-Forwarded-Proto https`, async (t) => {
    const app = await tlsApp(t, build)
    assert.match(app.url, /^https:/)
    const socket = await connect(t, app.url, { transports: ['websocket'], ca })
    const ack = await socket.emitWithAck('echo', 'secure') as EchoAck
    assert.deepEqual(ack, { msg: 'secure', node: 'tls-node', proto: 'https' })
    assert.equal(socket.io.engine.transport.name, 'websocket')
  })

  test(`tls: ${adapter} on https forwards a polling-only Socket.IO client to an https upstream, which sees X-Forwarded-Proto https`, async (t) => {
    const app = await tlsApp(t, build)
    const socket = await connect(t, app.url, { transports: ['polling'], ca })
    const ack = await socket.emitWithAck('echo', 'secure') as EchoAck
    assert.deepEqual(ack, { msg: 'secure', node: 'tls-node', proto: 'https' })
    assert.equal(socket.io.engine.transport.name, 'polling')
  })

  test(`tls: ${adapter} on https serves assets with their caching headers`, async (t) => {
    const app = await tlsApp(t, build)
    const res = await request(app.url).get('/assets/app.js').ca(ca)
    assert.equal(res.status, 200)
    assert.equal(res.headers['cache-control'], 'max-age=315360000')
  })
}

test('tls: an https upstream whose certificate the pool does not trust gets 502, never an unverified connection', async (t) => {
  const app = await tlsApp(t, buildExpress, null)
  const res = await request(app.url).get('/socket.io/?EIO=4&transport=polling').ca(ca)
  assert.equal(res.status, 502, res.text)
})
