import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createGateway, matchedPrefix, normalizeMountPath, stripMountPath } from '../src/index.js'

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

test('mount: matchedPrefix names the status path exactly, before any route', async () => {
  const gateway = createGateway({ target: 'http://127.0.0.1:9', routes: [{ path: '/api', upstream: 'default' }], status: { path: '/status' } })
  assert.equal(matchedPrefix(gateway, 'h', '/status'), '/status')
  assert.equal(matchedPrefix(gateway, 'h', '/status/x'), undefined)
  await gateway.close()
})
