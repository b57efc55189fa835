import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { attachPaths, createGateway, matchedPrefix, normalizeMountPath, ServerMounts, stripMountPath } from '../src/index.js'
import { gatewayServer, listen, parseAnswer, rawExchange, upgradeRequest, wsEchoUpstream } from './helpers/servers.js'

test('mount: a mount path becomes a prefix without a trailing slash', () => {
  assert.equal(normalizeMountPath('/rt/'), '/rt')
  assert.equal(normalizeMountPath('rt'), '/rt')
  assert.equal(normalizeMountPath('/'), '/')
  assert.equal(normalizeMountPath(''), '/')
})

test('mount: a mount path with route syntax has no prefix', () => {
  for (const path of ['/t/:tenant', '/rt/*', '/a(b)?']) assert.equal(normalizeMountPath(path), undefined, path)
})

test('mount: stripping a mount path leaves the URL a mounted app sees', () => {
  assert.equal(stripMountPath('/rt', '/rt/socket.io/?EIO=4'), '/socket.io/?EIO=4')
  assert.equal(stripMountPath('/rt', '/rt'), '/')
  assert.equal(stripMountPath('/rt', '/rt?x=1'), '/?x=1')
  assert.equal(stripMountPath('/', '/a/b'), '/a/b')
})

test('mount: matchedPrefix names the route that would take a request, host rules included', async () => {
  const gateway = createGateway({
    upstreams: { a: { servers: ['http://127.0.0.1:9'] } },
    routes: [{ path: '/socket.io/', upstream: 'a' }, { host: 'app.test', path: '/', upstream: 'a' }],
  })
  assert.equal(matchedPrefix(gateway, 'other.test', '/socket.io/'), '/socket.io/')
  assert.equal(matchedPrefix(gateway, 'app.test:8080', '/page'), '/')
  assert.equal(matchedPrefix(gateway, 'other.test', '/page'), undefined)
  await gateway.close()
})

test('mount: matchedPrefix and the core agree on status.host whatever port the client sends, and a status.host with a port is refused', async (t) => {
  assert.throws(() => createGateway({ target: 'http://127.0.0.1:9', status: { host: 'status.test:8080' } }),
    (err: Error & { code?: string }) => err.code === 'SOCKGATE_ERR_INVALID_OPTION' && /status\.host/.test(err.message) && /without a port/.test(err.message))
  const { gateway, port } = await gatewayServer(t, {
    upstreams: { a: { servers: ['http://127.0.0.1:9'] } }, routes: [{ path: '/api', upstream: 'a' }], status: { path: '/status', host: 'Status.Test' },
  })
  const page = async (host: string): Promise<number> =>
    parseAnswer((await rawExchange(port, `GET /status?format=json HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)).text).status
  for (const host of ['status.test:8080', 'status.test', 'STATUS.test:9']) {
    assert.equal(matchedPrefix(gateway, host, '/status'), '/status', host)
    assert.equal(await page(host), 200, host)
  }
  assert.equal(matchedPrefix(gateway, 'other.test', '/status'), undefined)
  assert.equal(await page('other.test'), 404)
})

test('mount: matchedPrefix names the status path exactly, before any route', async () => {
  const gateway = createGateway({ target: 'http://127.0.0.1:9', routes: [{ path: '/api', upstream: 'default' }], status: { path: '/status' } })
  assert.equal(matchedPrefix(gateway, 'h', '/status'), '/status')
  assert.equal(matchedPrefix(gateway, 'h', '/status/x'), undefined)
  await gateway.close()
})

test('mount: attach paths become plain prefixes, and route syntax is refused by name', () => {
  assert.deepEqual(attachPaths(['/rt/', 'chat']), ['/rt', '/chat'])
  assert.deepEqual(attachPaths('/'), ['/'])
  assert.throws(() => attachPaths(['/ok', '/t/:tenant']), (err: Error) => err instanceof TypeError && err.message.includes('/t/:tenant'))
})

test('mount: ServerMounts moves upgrades from the paths it no longer has to the new ones', async (t) => {
  const upstream = await wsEchoUpstream(t)
  const gateway = createGateway({ target: upstream.url })
  t.after(() => gateway.close())
  const server = http.createServer()
  const port = await listen(t, server)
  const mounts = new ServerMounts(server, gateway)
  mounts.set(['/a'])
  assert.equal(parseAnswer((await rawExchange(port, upgradeRequest('/a/chat'), 2_000)).text).status, 101)
  mounts.set(['/b'])
  assert.equal(parseAnswer((await rawExchange(port, upgradeRequest('/a/chat'))).text).status, 404)
  assert.equal(parseAnswer((await rawExchange(port, upgradeRequest('/b/chat'), 2_000)).text).status, 101)
  mounts.clear()
  assert.equal(parseAnswer((await rawExchange(port, upgradeRequest('/b/chat'))).text).status, 404)
})
