import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { Server as SocketIoServer } from 'socket.io'
import { engineIoId, InvalidOptionError } from '../src/index.js'
import { isServerName, serverNameOfSid } from '../src/engine-io-id.js'

test('engineIoId: an id carries its server name, and the gateway reads the name back', () => {
  const next = engineIoId('node-1')
  const sid = next()
  assert.match(sid, /^node-1\./)
  assert.equal(serverNameOfSid(sid), 'node-1')
})

test('engineIoId: a name with dots is read back whole', () => {
  assert.equal(serverNameOfSid(engineIoId('eu-west.node.7')()), 'eu-west.node.7')
})

test('engineIoId: ids need no escaping in a query string', () => {
  const next = engineIoId('a_b-c.d')
  for (let i = 0; i < 1_000; i++) {
    const sid = next()
    assert.equal(encodeURIComponent(sid), sid)
  }
})

test('engineIoId: the random part is 128 bits of base64url, different on every call', () => {
  const next = engineIoId('n')
  const seen = new Set<string>()
  for (let i = 0; i < 10_000; i++) {
    const random = next().slice('n.'.length)
    assert.match(random, /^[A-Za-z0-9_-]{22}$/)
    assert.equal(Buffer.from(random, 'base64url').length, 16)
    seen.add(random)
  }
  assert.equal(seen.size, 10_000)
})

test('engineIoId: a name that could not be carried is refused with SOCKGATE_ERR_INVALID_OPTION', () => {
  for (const name of ['', 'a b', 'node/1', 'né', 'x'.repeat(65), 'a?b', 'a&b', 7 as unknown as string]) {
    assert.throws(() => engineIoId(name), (err: unknown) => err instanceof InvalidOptionError &&
      err.code === 'SOCKGATE_ERR_INVALID_OPTION' && err.message.startsWith('engineIoId(name) must be 1 to 64 letters'), JSON.stringify(name))
  }
})

test('engineIoId: names follow the rule of servers[].name, the 64-character limit included', () => {
  const longest = 'x'.repeat(64)
  assert.ok(isServerName(longest))
  assert.equal(serverNameOfSid(engineIoId(longest)()), longest)
})

test('serverNameOfSid: engine.io\'s own ids carry no name', async () => {
  // Attached to a server that never listens: only its engine's generateId is used.
  const io = new SocketIoServer(http.createServer())
  for (let i = 0; i < 1_000; i++) assert.equal(serverNameOfSid(await io.engine.generateId({} as never)), undefined)
  await io.close()
})

test('serverNameOfSid: a random part of the wrong length or alphabet, or a missing name, gives no name', () => {
  const random = engineIoId('n')().slice(2)
  for (const sid of [`n.${random.slice(1)}`, `n.${random}x`, `.${random}`, `n.${random.slice(1)}+`, `n${random}`, 'n.', '', `a b.${random}`]) {
    assert.equal(serverNameOfSid(sid), undefined, sid)
  }
})
