/**
 * The static `/assets` mounts, one scenario table run against the app
 * built the same way on Express, Koa and Fastify (apps.ts): validators and
 * 304s, HEAD, the mount asked for without its slash, traversal and methods.
 * The gateway routes everything to an echo upstream, so a request the
 * mount fails to answer shows up as the upstream's 200.
 */
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import request from 'supertest'
import sockgatePlugin from '../../adapters/fastify.js'
import { slashLocation } from '../../adapters/assets.js'
import { rawExchange } from '../helpers/servers.js'
import { ASSETS_DIR, buildExpress, buildFastify, buildKoa, type AppUnderTest, type BuildApp } from './apps.js'
import { echoUpstream } from './scenarios.js'

const FILE = statSync(join(ASSETS_DIR, 'app.js'))
/** The validator serve-static and @fastify/static derive from a file's stats, which Koa must send too. */
const FILE_ETAG = `W/"${FILE.size.toString(16)}-${FILE.mtime.getTime().toString(16)}"`

async function setup (t: TestContext, build: BuildApp): Promise<AppUnderTest> {
  const echo = await echoUpstream(t)
  return await build(t, { gateway: { upstreams: { echo: { servers: [echo.url] } }, routes: [{ path: '/', upstream: 'echo' }] } })
}

const adapters: Array<[string, BuildApp]> = [['express', buildExpress], ['koa', buildKoa], ['fastify', buildFastify]]

for (const [adapter, build] of adapters) {
  const name = (behaviour: string): string => `assets: ${adapter}: ${behaviour}`

  test(name('a file is served with an ETag from its stats, its Last-Modified and the caching headers of the mount'), async (t) => {
    const app = await setup(t, build)
    const res = await request(app.url).get('/assets/app.js')
    assert.equal(res.status, 200)
    assert.match(res.text, /sockgate asset/)
    assert.equal(res.headers.etag, FILE_ETAG)
    assert.equal(res.headers['last-modified'], FILE.mtime.toUTCString())
    assert.equal(res.headers.expires, 'Thu, 31 Dec 2037 23:55:55 GMT')
    assert.equal(res.headers['cache-control'], 'max-age=315360000')
  })

  test(name('a GET whose If-None-Match holds the ETag gets 304 with no body, keeping the validator and caching headers'), async (t) => {
    const app = await setup(t, build)
    const res = await request(app.url).get('/assets/app.js').set('If-None-Match', FILE_ETAG)
    assert.equal(res.status, 304)
    assert.equal(res.text, '')
    // RFC 9110 §15.4.5: a 304 carries the ETag, Cache-Control and Expires a 200 would have.
    assert.equal(res.headers.etag, FILE_ETAG)
    assert.equal(res.headers['cache-control'], 'max-age=315360000')
  })

  test(name('a GET whose If-Modified-Since equals Last-Modified gets 304'), async (t) => {
    const app = await setup(t, build)
    const res = await request(app.url).get('/assets/app.js').set('If-Modified-Since', FILE.mtime.toUTCString())
    assert.equal(res.status, 304)
    assert.equal(res.text, '')
  })

  test(name('a GET whose If-None-Match names another version gets 200 and the file'), async (t) => {
    const app = await setup(t, build)
    const res = await request(app.url).get('/assets/app.js').set('If-None-Match', 'W/"0-0"')
    assert.equal(res.status, 200)
    assert.match(res.text, /sockgate asset/)
  })

  test(name('a stale If-None-Match gets 200 even beside a current If-Modified-Since (RFC 9110 §13.1.3)'), async (t) => {
    const app = await setup(t, build)
    const res = await request(app.url).get('/assets/app.js').set('If-None-Match', 'W/"0-0"').set('If-Modified-Since', FILE.mtime.toUTCString())
    assert.equal(res.status, 200)
    assert.match(res.text, /sockgate asset/)
  })

  test(name('HEAD of a file answers its headers and Content-Length and no body'), async (t) => {
    const app = await setup(t, build)
    // Raw bytes, because an HTTP client reads no body after HEAD whatever the server sends.
    const { text } = await rawExchange(app.port, 'HEAD /assets/app.js HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
    const [head = '', body] = text.split('\r\n\r\n')
    assert.match(head, /^HTTP\/1\.1 200 /)
    assert.match(head, new RegExp(`^content-length: ${FILE.size}$`, 'im'))
    assert.match(head, /^etag: W\/"/im)
    assert.equal(body, '')
  })

  test(name('/assets without its slash is 301 to /assets/ with the query kept (issue 8: Koa answered 500)'), async (t) => {
    const app = await setup(t, build)
    const res = await request(app.url).get('/assets?v=2').redirects(0)
    assert.equal(res.status, 301)
    assert.equal(res.headers.location, '/assets/?v=2')
    assert.equal(res.text, 'Moved Permanently\n')
  })

  test(name('a .. in an asset path gets 404, never the file outside the root'), async (t) => {
    const app = await setup(t, build)
    const res = await request(app.url).get('/assets/../secret.txt')
    assert.equal(res.status, 404)
    assert.doesNotMatch(res.text, /OUTSIDE-ROOT/)
  })

  test(name('methods other than GET and HEAD get 405 with Allow: GET, HEAD, on a file and on the mount itself'), async (t) => {
    const app = await setup(t, build)
    for (const path of ['/assets/app.js', '/assets']) {
      const res = await request(app.url).post(path)
      assert.equal(res.status, 405, path)
      assert.equal(res.headers.allow, 'GET, HEAD', path)
    }
  })
}

test('assets: the slash redirect keeps one leading slash, so it never names another host', () => {
  assert.equal(slashLocation('//evil.test/assets?v=2'), '/evil.test/assets/?v=2')
})

test('assets: fastify: with ignoreTrailingSlash, /assets/ is never redirected to itself', async (t) => {
  const echo = await echoUpstream(t)
  const app = Fastify({ routerOptions: { ignoreTrailingSlash: true } })
  t.after(() => app.close())
  await app.register(sockgatePlugin, { target: echo.url, assets: { '/assets': ASSETS_DIR } })
  const res = await app.inject({ method: 'GET', url: '/assets/' })
  assert.notEqual(res.statusCode, 301)
  assert.equal(res.headers.location, undefined)
})
