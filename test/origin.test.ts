import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { InvalidOptionError, type GatewayOptions } from '../src/index.js'
import { compileOrigins, type OriginCheck } from '../src/origin.js'
import { gatewayServer, parseAnswer, rawExchange, recordEvents, upgradeRequest, watchForCrashes, wsEchoUpstream } from './helpers/servers.js'
import { wsRoundTrip } from './adapters/upstreams.js'

watchForCrashes()

function check (origins: unknown, requireOrigin?: boolean): OriginCheck {
  const compiled = compileOrigins(origins, requireOrigin)
  assert.ok(compiled !== null)
  return compiled
}

// The check, on plain values

test('origin: a listed origin passes and an unlisted one does not', () => {
  const allowed = check(['https://app.example.com'])
  assert.equal(allowed('https://app.example.com'), true)
  assert.equal(allowed('https://evil.example'), false)
  assert.equal(allowed('http://app.example.com'), false, 'the scheme counts')
  assert.equal(allowed('https://app.example.com:8443'), false, 'the port counts')
})

test('origin: default ports are the same origin as no port, on either side', () => {
  assert.equal(check(['https://app.example.com:443'])('https://app.example.com'), true)
  assert.equal(check(['https://app.example.com'])('https://app.example.com:443'), true)
  assert.equal(check(['http://app.example.com'])('http://app.example.com:80'), true)
  assert.equal(check(['http://app.example.com'])('http://app.example.com:443'), false)
  assert.equal(check(['http://localhost:3000'])('http://localhost:3000'), true)
})

test('origin: host and scheme compare case-insensitively', () => {
  assert.equal(check(['https://App.Example.COM'])('https://app.example.com'), true)
  assert.equal(check(['https://app.example.com'])('HTTPS://APP.example.com'), true)
})

test('origin: *.example.com matches sub-domains of any depth, with its scheme and port, but not example.com itself', () => {
  const allowed = check(['https://*.example.com'])
  assert.equal(allowed('https://app.example.com'), true)
  assert.equal(allowed('https://a.b.example.com'), true)
  assert.equal(allowed('https://example.com'), false)
  assert.equal(allowed('https://evilexample.com'), false)
  assert.equal(allowed('https://example.com.evil.test'), false)
  assert.equal(allowed('http://app.example.com'), false)
  assert.equal(allowed('https://app.example.com:8443'), false)
  assert.equal(check(['https://*.example.com:8443'])('https://app.example.com:8443'), true)
})

test('origin: without Origin an upgrade passes, unless requireOrigin is set', () => {
  assert.equal(check(['https://app.example.com'])(undefined), true)
  assert.equal(check(['https://app.example.com'], true)(undefined), false)
  assert.equal(check(['https://app.example.com'], true)('https://app.example.com'), true)
})

test("origin: Origin null passes only when the list says 'null'", () => {
  assert.equal(check(['https://app.example.com'])('null'), false)
  assert.equal(check(['https://app.example.com', 'null'])('null'), true)
})

test('origin: what is not one origin never passes: a path, several joined, credentials, garbage', () => {
  const allowed = check(['https://app.example.com', 'https://*.example.com'])
  for (const origin of ['https://app.example.com/', 'https://app.example.com/x', 'https://app.example.com, https://evil.example',
    'https://user@app.example.com', 'app.example.com', '', 'ws://app.example.com']) {
    assert.equal(allowed(origin), false, origin)
  }
})

test('origin: no origins means no check, and a list is checked once, at start-up', () => {
  assert.equal(compileOrigins(undefined, undefined), null)
  assert.equal(compileOrigins(undefined, false), null)
})

for (const [what, origins, requireOrigin, path, message] of [
  ['a bare *', ['*'], undefined, 'origins[0]', /leave origins out/],
  ['a path', ['https://app.example.com/'], undefined, 'origins[0]', /without a path \(not even '\/'\)/],
  ['a query', ['https://app.example.com?x=1'], undefined, 'origins[0]', /query/],
  ['credentials', ['https://u:p@app.example.com'], undefined, 'origins[0]', /credentials/],
  ['a scheme other than http and https', ['https://ok.example', 'wss://app.example.com'], undefined, 'origins[1]', /must use http: or https: \(got wss:\)/],
  ['no scheme', ['app.example.com'], undefined, 'origins[0]', /must be an origin such as/],
  ['a * that is not the whole first label', ['https://app*.example.com'], undefined, 'origins[0]', /whole first label/],
  ['a * further down', ['https://app.*.example.com'], undefined, 'origins[0]', /whole first label/],
  ['a port out of range', ['https://app.example.com:70000'], undefined, 'origins[0]', /must be an origin/],
  ['an entry that is not a string', [42], undefined, 'origins[0]', /must be a string/],
  ['an empty list', [], undefined, 'origins', /non-empty list/],
  ['a string in place of a list', 'https://app.example.com', undefined, 'origins', /non-empty list/],
  ['requireOrigin without origins', undefined, true, 'requireOrigin', /needs an origins list/],
  ['a requireOrigin that is not a boolean', ['https://app.example.com'], 'yes', 'requireOrigin', /must be a boolean/],
] as Array<[string, unknown, unknown, string, RegExp]>) {
  test(`origin: ${what} is an option error naming ${path}`, () => {
    assert.throws(() => compileOrigins(origins, requireOrigin), (err: unknown) => {
      assert.ok(err instanceof InvalidOptionError)
      assert.ok(err.message.startsWith(`${path} `), err.message)
      assert.match(err.message, message)
      return true
    })
  })
}

// Through a gateway, with real ws clients

/** A ws echo upstream that counts the TCP connections dialled to it, behind a gateway with `options`. */
async function originGateway (t: TestContext, options: Partial<GatewayOptions>) {
  const up = await wsEchoUpstream(t)
  let dialled = 0
  up.server.on('connection', () => { dialled++ })
  const g = await gatewayServer(t, { target: up.url, ...options })
  return { ...g, events: recordEvents(g.gateway), dialled: () => dialled }
}

test('origin: a ws client from a listed origin gets its tunnel; one from another gets 403 and the upstream is never dialled', async (t) => {
  const { url, dialled } = await originGateway(t, { origins: ['https://app.example.com', 'https://*.example.com'] })
  assert.equal(await wsRoundTrip(t, url, 'hi', { origin: 'https://evil.example' }), 'HTTP 403')
  assert.equal(await wsRoundTrip(t, url, 'hi', { origin: 'https://example.com' }), 'HTTP 403')
  assert.equal(dialled(), 0)
  assert.equal(await wsRoundTrip(t, url, 'hi', { origin: 'https://app.example.com' }), 'hi')
  assert.equal(await wsRoundTrip(t, url, 'hi', { origin: 'https://chat.eu.example.com:443' }), 'hi')
  assert.equal(dialled(), 2)
})

test('origin: the 403 says why, closes the connection, and is reported as SOCKGATE_ERR_ORIGIN', async (t) => {
  const { port, events, dialled } = await originGateway(t, { origins: ['https://app.example.com'] })
  const { text, closed } = await rawExchange(port, upgradeRequest('/chat', { Origin: 'https://evil.example' }))
  const answer = parseAnswer(text)
  assert.equal(answer.status, 403)
  assert.equal(answer.headers.connection, 'close')
  assert.match(answer.body, /Origin "https:\/\/evil\.example" is not in origins/)
  assert.ok(closed)
  assert.deepEqual(events.errors.map((e) => [e.error.code, e.kind, e.path, e.pool]), [['SOCKGATE_ERR_ORIGIN', 'upgrade', '/chat', 'default']])
  assert.equal(dialled(), 0)
})

test('origin: an upgrade without Origin passes, and gets 403 with requireOrigin', async (t) => {
  const open = await originGateway(t, { origins: ['https://app.example.com'] })
  assert.equal(await wsRoundTrip(t, open.url), 'hi')
  const strict = await originGateway(t, { origins: ['https://app.example.com'], requireOrigin: true })
  assert.equal(await wsRoundTrip(t, strict.url), 'HTTP 403')
  assert.equal(strict.dialled(), 0)
  assert.match(strict.events.errors[0]!.error.message, /no Origin header and requireOrigin is set/)
  assert.equal(await wsRoundTrip(t, strict.url, 'hi', { origin: 'https://app.example.com' }), 'hi')
})

test('origin: a malformed upgrade is still a 400, whatever its Origin', async (t) => {
  const { port } = await originGateway(t, { origins: ['https://app.example.com'] })
  const answer = parseAnswer((await rawExchange(port, upgradeRequest('/chat', { Origin: 'https://evil.example', 'Sec-WebSocket-Key': 'short' }))).text)
  assert.equal(answer.status, 400)
})

test('origin: plain HTTP requests are not checked (CORS is the upstream\'s), only upgrades', async (t) => {
  const { url } = await originGateway(t, { origins: ['https://app.example.com'] })
  const res = await fetch(`${url}/page`, { headers: { Origin: 'https://evil.example' } })
  // The ws upstream answers plain requests 426: the request reached it.
  assert.equal(res.status, 426)
  await res.text()
})
