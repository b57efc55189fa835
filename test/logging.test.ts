import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import type { GatewayOptions } from '../src/index.js'
import { eventually, gatewayServer, httpUpstream, nextMessage, openWs, refusedUrl, watchForCrashes, wsClosed, wsEchoUpstream } from './helpers/servers.js'

watchForCrashes()

/** A real pino logger at debug level whose records (parsed JSON lines) land in `records`. */
function pinoToMemory (): { logger: pino.Logger, records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line !== '') records.push(JSON.parse(line) as Record<string, unknown>)
      cb()
    },
  })
  return { logger: pino({ level: 'debug' }, stream), records }
}

async function loggedGateway (t: TestContext, options: Omit<GatewayOptions, 'logger'>) {
  const { logger, records } = pinoToMemory()
  const g = await gatewayServer(t, { ...options, logger })
  return { ...g, records, find: (msg: string) => records.filter((r) => r.msg === msg) }
}

test('logger: a finished tunnel writes one info record with pool, server, name, path, client, duration and bytes', async (t) => {
  const up = await wsEchoUpstream(t)
  const { url, find } = await loggedGateway(t, { target: [{ url: up.url, name: 'node-1' }] })
  const ws = await openWs(t, `${url}/chat?room=1`)
  ws.send('hello')
  await nextMessage(ws)
  // After the closing handshake the server ends the TCP connection first (RFC 6455 §7.1.1).
  ws.close()
  await wsClosed(ws)
  assert.ok(await eventually(() => find('tunnel closed').length === 1))
  const record = find('tunnel closed')[0]!
  assert.equal(record.level, 30)
  assert.deepEqual(
    { pool: record.pool, server: record.server, name: record.name, path: record.path, clientAddress: record.clientAddress, reason: record.reason },
    { pool: 'default', server: up.url, name: 'node-1', path: '/chat?room=1', clientAddress: '127.0.0.1', reason: 'upstream-closed' })
  assert.equal(typeof record.durationMs, 'number')
  assert.ok((record.bytesIn as number) > 5 && (record.bytesOut as number) > 5, 'the record counts the frames both ways')
  assert.equal(find('tunnel open').length, 1)
  assert.equal(find('tunnel open')[0]!.level, 20)
})

test('logger: an upstream going down is a warn record naming it, and coming back an info record', async (t) => {
  const up = await httpUpstream(t, (_req, res) => { res.writeHead(200).end('ok') })
  const dead = await refusedUrl()
  const { url, gateway, find } = await loggedGateway(t, { target: [{ url: dead, name: 'node-2' }, up.url], sticky: { engineIo: false } })
  for (let i = 0; i < 2; i++) await (await fetch(`${url}/x`)).text()
  assert.ok(await eventually(() => find('upstream down').length === 1))
  assert.deepEqual(find('upstream down')[0], { ...find('upstream down')[0], level: 40, pool: 'default', server: dead, name: 'node-2', reason: 'passive' })
  gateway.pool('default').markDown(up.url)
  gateway.pool('default').markUp(up.url)
  assert.deepEqual(find('upstream up').map((r) => [r.level, r.server, r.reason]), [[30, up.url, 'admin']])
})

test('logger: every proxy:error is a record with its code, at error level for 5xx', async (t) => {
  const dead = await refusedUrl()
  const { url, find, records } = await loggedGateway(t, { target: dead })
  assert.equal((await fetch(`${url}/x`)).status, 502)
  assert.ok(await eventually(() => records.some((r) => r.code === 'SOCKGATE_ERR_UPSTREAM_CONNECT')))
  const record = records.find((r) => r.code === 'SOCKGATE_ERR_UPSTREAM_CONNECT')!
  assert.deepEqual([record.level, record.status, record.kind, record.server, record.path, record.cause], [50, 502, 'http', dead, '/x', 'ECONNREFUSED'])
  assert.match(String(record.msg), /check that it is running/)
  assert.equal(find('upstream down').length, 1)
})

test('logger: a route with log: false writes no tunnel or error records; other routes still do', async (t) => {
  const up = await wsEchoUpstream(t)
  const dead = await refusedUrl()
  const { url, records, find } = await loggedGateway(t, {
    upstreams: { quiet: { servers: [up.url] }, down: { servers: [dead] } },
    routes: [{ path: '/quiet', upstream: 'quiet', log: false }, { path: '/quiet-down', upstream: 'down', log: false }, { path: '/', upstream: 'down' }],
  })
  const ws = await openWs(t, `${url}/quiet`)
  ws.close()
  await wsClosed(ws)
  assert.equal((await fetch(`${url}/quiet-down`)).status, 502)
  assert.equal((await fetch(`${url}/loud`)).status, 502)
  assert.ok(await eventually(() => records.some((r) => r.path === '/loud')))
  assert.deepEqual(find('tunnel closed'), [])
  assert.deepEqual(records.filter((r) => typeof r.path === 'string' && (r.path).startsWith('/quiet')), [])
})
