/**
 * Cookie stickiness through a live gateway (issue 4): when the cookie is set,
 * when it is left alone, and what forged or stale cookies get (re-balanced,
 * never an error, never a server of the client's choosing).
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import https from 'node:https'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { WebSocket } from 'ws'
import { createGateway, type BalanceOption } from '../src/index.js'
import { gatewayServer, httpUpstream, listen } from './helpers/servers.js'
import { loopbackAddress, namedNodes, request, type NamedNode } from './helpers/balance.js'

const COOKIE = 'sg_node'

async function cookieGateway (t: TestContext, nodes: readonly NamedNode[], balance: BalanceOption = 'round-robin', trustProxy: boolean | string[] = false): Promise<Awaited<ReturnType<typeof gatewayServer>>> {
  return await gatewayServer(t, { upstreams: { app: { servers: nodes.map((n) => n.url), balance, sticky: { cookie: COOKIE } } }, trustProxy })
}

/** The sticky cookie's `name=value` in an answer, or undefined. */
function stickyCookie (headers: http.IncomingHttpHeaders): string | undefined {
  return headers['set-cookie']?.find((c) => c.startsWith(`${COOKIE}=`))?.split(';')[0]
}

test('sticky cookie: a first answer sets an opaque cookie that does not reveal the server', async (t) => {
  const nodes = await namedNodes(t, 3)
  const { port } = await cookieGateway(t, nodes)
  const res = await request(port, '/')
  const setCookie = res.headers['set-cookie']?.find((c) => c.startsWith(`${COOKIE}=`))
  assert.ok(setCookie !== undefined)
  assert.match(setCookie, /^sg_node=[A-Za-z0-9_-]{22}; Path=\/; HttpOnly; SameSite=Lax$/)
  for (const n of nodes) assert.ok(!setCookie.includes(new URL(n.url).port))
})

test('sticky cookie: a client whose cookie names its server stays there and gets no new cookie', async (t) => {
  const nodes = await namedNodes(t, 3)
  const { port } = await cookieGateway(t, nodes)
  const first = await request(port, '/')
  const cookie = stickyCookie(first.headers)!
  for (let i = 0; i < 9; i++) {
    const res = await request(port, '/', { headers: { cookie: `a=1; ${cookie}` } })
    assert.equal(res.body, first.body)
    assert.equal(res.headers['set-cookie'], undefined)
  }
})

test('sticky cookie: a forged cookie is re-balanced to the balancer\'s own pick and replaced, never refused', async (t) => {
  const nodes = await namedNodes(t, 3)
  const { port } = await cookieGateway(t, nodes, 'ip-hash')
  const forgeries = ['AAAAAAAAAAAAAAAAAAAAAA', 'not-a-cookie', encodeURIComponent(nodes[2]!.url), '']
  for (let i = 0; i < 12; i++) {
    const localAddress = loopbackAddress(i)
    const honest = await request(port, '/', { localAddress })
    const real = stickyCookie(honest.headers)!
    for (const forged of forgeries) {
      const res = await request(port, '/', { localAddress, headers: { cookie: `${COOKIE}=${forged}` } })
      assert.equal(res.status, 200)
      assert.equal(res.body, honest.body, `a forged cookie gets ip-hash's pick for ${localAddress}`)
      assert.equal(stickyCookie(res.headers), real)
    }
  }
})

test('sticky cookie: a cookie for a removed server is re-balanced and replaced', async (t) => {
  const nodes = await namedNodes(t, 3)
  const { port, gateway } = await cookieGateway(t, nodes)
  let stale: string | undefined
  for (let i = 0; i < 3 && stale === undefined; i++) {
    const res = await request(port, '/')
    if (res.body === 'n0') stale = stickyCookie(res.headers)
  }
  assert.ok(stale !== undefined, 'round-robin reached n0')
  assert.ok(gateway.pool('app').remove(nodes[0]!.url) !== undefined)
  const res = await request(port, '/', { headers: { cookie: stale } })
  assert.equal(res.status, 200)
  assert.notEqual(res.body, 'n0')
  const fresh = stickyCookie(res.headers)
  assert.ok(fresh !== undefined && fresh !== stale)
  assert.equal((await request(port, '/', { headers: { cookie: fresh } })).body, res.body)
})

test('sticky cookie: a cookie for a server that is down is re-balanced, and the client learns its new server', async (t) => {
  const nodes = await namedNodes(t, 3)
  const { port, gateway } = await cookieGateway(t, nodes)
  const first = await request(port, '/')
  const cookie = stickyCookie(first.headers)!
  gateway.pool('app').markDown(nodes.find((n) => n.name === first.body)!.url)
  const moved = await request(port, '/', { headers: { cookie } })
  assert.equal(moved.status, 200)
  assert.notEqual(moved.body, first.body)
  const learned = stickyCookie(moved.headers)
  assert.ok(learned !== undefined && learned !== cookie)
  gateway.pool('app').markUp(nodes.find((n) => n.name === first.body)!.url)
  assert.equal((await request(port, '/', { headers: { cookie: learned } })).body, moved.body)
})

test('sticky cookie: the upstream\'s own Set-Cookie headers are kept next to the sticky cookie', async (t) => {
  const up = await httpUpstream(t, (_req, res) => {
    res.setHeader('set-cookie', ['app=1; Path=/', 'theme=dark'])
    res.end('ok')
  })
  const { port } = await gatewayServer(t, { upstreams: { app: { servers: [up.url], sticky: { cookie: COOKIE } } } })
  const res = await request(port, '/')
  const cookies = res.headers['set-cookie'] ?? []
  assert.deepEqual(cookies.map((c) => c.split('=')[0]).sort(), ['app', 'sg_node', 'theme'])
})

test('sticky cookie: the 101 of an upgrade carries the cookie, and later upgrades follow it', async (t) => {
  const nodes = await namedNodes(t, 3)
  const { port } = await cookieGateway(t, nodes)
  const open = (cookie?: string): Promise<{ name: string, setCookie: string | undefined }> => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, cookie === undefined ? {} : { headers: { cookie } })
    t.after(() => ws.terminate())
    let setCookie: string | undefined
    ws.once('upgrade', (res) => { setCookie = stickyCookie(res.headers) })
    ws.once('message', (data) => {
      resolve({ name: String(data), setCookie })
      ws.close()
    })
    ws.once('error', reject)
  })
  const first = await open()
  assert.ok(first.setCookie !== undefined)
  for (let i = 0; i < 5; i++) {
    const again = await open(first.setCookie)
    assert.equal(again.name, first.name)
    assert.equal(again.setCookie, undefined)
  }
})

test('sticky cookie: Secure is added when a trusted proxy says the client used https', async (t) => {
  const nodes = await namedNodes(t, 2)
  const { port } = await cookieGateway(t, nodes, 'round-robin', ['127.0.0.1'])
  const viaProxy = await request(port, '/', { headers: { 'x-forwarded-proto': 'https' } })
  assert.match(viaProxy.headers['set-cookie']?.[0] ?? '', /; Secure$/)
  const plain = await request(port, '/')
  assert.doesNotMatch(plain.headers['set-cookie']?.[0] ?? '', /Secure/)
  // From a peer that is not trusted the header means nothing.
  const untrusted = await request(port, '/', { localAddress: loopbackAddress(7), headers: { 'x-forwarded-proto': 'https' } })
  assert.doesNotMatch(untrusted.headers['set-cookie']?.[0] ?? '', /Secure/)
})

test('sticky cookie: Secure is added for a client connected over TLS', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sockgate-tls-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
  } catch {
    t.skip('openssl is not available to make a test certificate')
    return
  }
  const nodes = await namedNodes(t, 2)
  const gateway = createGateway({ upstreams: { app: { servers: nodes.map((n) => n.url), sticky: { cookie: COOKIE } } } })
  t.after(() => gateway.close())
  const server = https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => gateway.handleRequest(req, res))
  await listen(t, server)
  const { port } = server.address() as AddressInfo
  const setCookie = await new Promise<string[] | undefined>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path: '/', rejectUnauthorized: false, agent: false }, (res) => {
      res.resume()
      resolve(res.headers['set-cookie'])
    }).on('error', reject)
  })
  assert.match(setCookie?.[0] ?? '', /^sg_node=.*; Secure$/)
})
