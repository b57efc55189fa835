import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import {
  answeringUpstream, eventually, gatewayTo, httpUpstream, maskedFrame, parseAnswer, rawClient, rawExchange, rawUpstream,
  refusedUrl, switchingProtocols, upgradeRequest, watchForCrashes, wsEchoUpstream,
} from './helpers/servers.js'

watchForCrashes()

/** The client saw its socket closed and the gateway keeps no tunnel open. */
async function assertNothingOpen (gateway: { status: () => { tunnels: { open: number } } }, closed: boolean): Promise<void> {
  assert.equal(closed, true, 'the client socket was left open')
  assert.ok(await eventually(() => gateway.status().tunnels.open === 0), 'a tunnel stayed open')
}

const GOOD = upgradeRequest('/chat')

const malformed: Array<{ name: string, request: string, status: number, code: string, reason: RegExp, header?: [string, string] }> = [
  {
    name: 'upgrade: a POST upgrade gets 400 naming the method',
    request: GOOD.replace(/^GET/, 'POST'),
    status: 400,
    code: 'SOCKGATE_ERR_BAD_UPGRADE',
    reason: /method must be GET, not POST/,
  },
  {
    name: 'upgrade: an HTTP/1.0 upgrade gets 400 naming the version',
    request: GOOD.replace('HTTP/1.1', 'HTTP/1.0'),
    status: 400,
    code: 'SOCKGATE_ERR_BAD_UPGRADE',
    reason: /HTTP version must be 1\.1/,
  },
  {
    name: 'upgrade: an upgrade without Sec-WebSocket-Key gets 400 naming the key',
    request: upgradeRequest('/chat', { 'Sec-WebSocket-Key': '' }),
    status: 400,
    code: 'SOCKGATE_ERR_BAD_UPGRADE',
    reason: /Sec-WebSocket-Key must be a base64-encoded 16-byte nonce/,
  },
  {
    name: 'upgrade: a Sec-WebSocket-Key that is not a 16-byte nonce gets 400',
    request: upgradeRequest('/chat', { 'Sec-WebSocket-Key': 'c2hvcnQ=' }),
    status: 400,
    code: 'SOCKGATE_ERR_BAD_UPGRADE',
    reason: /Sec-WebSocket-Key must be a base64-encoded 16-byte nonce/,
  },
  {
    name: 'upgrade: Sec-WebSocket-Version 1337 gets 426 with Sec-WebSocket-Version: 13',
    request: upgradeRequest('/chat', { 'Sec-WebSocket-Version': '1337' }),
    status: 426,
    code: 'SOCKGATE_ERR_UPGRADE_VERSION',
    reason: /Unsupported Sec-WebSocket-Version "1337"/,
    header: ['sec-websocket-version', '13'],
  },
  {
    name: 'upgrade: "Upgrade: websocket, h2c" gets 400 asking for exactly one protocol',
    request: upgradeRequest('/chat', { Upgrade: 'websocket, h2c' }),
    status: 400,
    code: 'SOCKGATE_ERR_BAD_UPGRADE',
    reason: /Upgrade must name exactly one protocol/,
  },
  {
    name: 'upgrade: "Upgrade: h2c" gets 400 saying the protocol may not be tunnelled',
    request: upgradeRequest('/chat', { Upgrade: 'h2c', 'Sec-WebSocket-Key': '', 'Sec-WebSocket-Version': '' }),
    status: 400,
    code: 'SOCKGATE_ERR_BAD_UPGRADE',
    reason: /protocol "h2c" may not be tunnelled/,
  },
]

for (const c of malformed) {
  test(`${c.name}, closes the socket and never contacts the upstream`, async (t) => {
    const upstream = await answeringUpstream(t, switchingProtocols)
    const { gateway, port, events } = await gatewayTo(t, upstream.url)
    const answer = await rawExchange(port, c.request)
    const { status, headers, body } = parseAnswer(answer.text)
    assert.equal(status, c.status, answer.text)
    assert.equal(headers.connection, 'close')
    assert.match(body, c.reason)
    if (c.header !== undefined) assert.equal(headers[c.header[0]], c.header[1])
    await assertNothingOpen(gateway, answer.closed)
    assert.equal(upstream.connections(), 0, 'the upstream was contacted')
    assert.deepEqual(events.errors.map((e) => e.error.code), [c.code])
    assert.equal(events.opened.length, 0)
  })
}

/** An upstream answering `reply` to a good upgrade: the client gets a 502, no tunnel opens, both sockets close, one protocol error is reported. */
async function assertUpstreamProtocol502 (t: TestContext, reply: string): Promise<void> {
  const upstream = await answeringUpstream(t, () => reply)
  const { gateway, port, events } = await gatewayTo(t, upstream.url)
  const answer = await rawExchange(port, GOOD)
  assert.equal(parseAnswer(answer.text).status, 502, answer.text)
  await assertNothingOpen(gateway, answer.closed)
  assert.ok(await eventually(() => upstream.sockets.size === 0), 'the upstream socket stayed open')
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_PROTOCOL'])
  assert.equal(events.opened.length, 0)
}

test('upgrade: a 101 with a wrong Sec-WebSocket-Accept gets the client a 502 and closes both sockets', (t) =>
  assertUpstreamProtocol502(t, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBvbmU=\r\n\r\n'))

test('upgrade: a 101 without Connection: upgrade gets the client a 502 and no tunnel', async (t) => {
  const upstream = await answeringUpstream(t, (request) =>
    switchingProtocols(request).replace('Connection: Upgrade\r\n', ''))
  const { gateway, port, events } = await gatewayTo(t, upstream.url)
  const answer = await rawExchange(port, GOOD)
  assert.equal(parseAnswer(answer.text).status, 502, answer.text)
  await assertNothingOpen(gateway, answer.closed)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_PROTOCOL'])
  assert.match(events.errors[0]!.error.message, /Connection: upgrade/)
  assert.equal(events.opened.length, 0)
})

test('upgrade: a bare 101 without Upgrade or Sec-WebSocket-Accept gets the client a 502', async (t) => {
  const upstream = await answeringUpstream(t, () => 'HTTP/1.1 101 Switching Protocols\r\n\r\n')
  const { gateway, port, events } = await gatewayTo(t, upstream.url)
  const answer = await rawExchange(port, GOOD)
  assert.equal(parseAnswer(answer.text).status, 502, answer.text)
  assert.doesNotMatch(answer.text, /101/)
  await assertNothingOpen(gateway, answer.closed)
  assert.ok(await eventually(() => upstream.sockets.size === 0), 'the upstream socket stayed open')
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_PROTOCOL'])
})

for (const status of [200, 302, 404]) {
  test(`upgrade: an upstream answering ${status} to an upgrade has its answer relayed with Connection: close and no tunnel`, async (t) => {
    const upstream = await httpUpstream(t, (_req, res) => {
      res.writeHead(status, { 'content-type': 'text/plain', 'x-upstream': 'yes', ...(status === 302 ? { location: '/elsewhere' } : {}) })
      res.end(`answer ${status} from upstream`)
    })
    const { gateway, port, events } = await gatewayTo(t, upstream.url)
    const answer = await rawExchange(port, GOOD)
    const { status: got, headers, body } = parseAnswer(answer.text)
    assert.equal(got, status, answer.text)
    assert.equal(headers.connection, 'close')
    assert.equal(headers['x-upstream'], 'yes')
    if (status === 302) assert.equal(headers.location, '/elsewhere')
    assert.equal(body, `answer ${status} from upstream`)
    await assertNothingOpen(gateway, answer.closed)
    assert.equal(events.opened.length, 0)
    assert.deepEqual(events.errors.map((e) => [e.error.code, e.error.statusCode]), [['SOCKGATE_ERR_UPGRADE_REFUSED', status]])
  })
}

test('upgrade: an upstream refusing with a chunked body has it relayed decoded and ended by the close', async (t) => {
  const upstream = await httpUpstream(t, (_req, res) => {
    res.writeHead(403, { 'content-type': 'text/plain' })
    res.write('not ')
    res.end('allowed')
  })
  const { gateway, port } = await gatewayTo(t, upstream.url)
  const answer = await rawExchange(port, GOOD)
  const { status, headers, body } = parseAnswer(answer.text)
  assert.equal(status, 403, answer.text)
  assert.equal(headers['transfer-encoding'], undefined)
  assert.equal(headers.connection, 'close')
  assert.equal(body, 'not allowed')
  await assertNothingOpen(gateway, answer.closed)
})

test('upgrade: an upgrade without Connection: upgrade gets 400 naming the missing header and no upstream contact', async (t) => {
  const upstream = await answeringUpstream(t, switchingProtocols)
  const { port, events } = await gatewayTo(t, upstream.url)
  const client = await rawClient(t, port)
  client.socket.write(upgradeRequest('/chat', { Connection: 'keep-alive' }))
  assert.ok(await eventually(() => /\r\n\r\n[^]*upgrade/i.test(client.text())), client.text())
  const { status, body } = parseAnswer(client.text())
  assert.equal(status, 400)
  assert.match(body, /Connection header must list "upgrade"/)
  assert.equal(upstream.connections(), 0)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_BAD_UPGRADE'])
  await client.closed
})

test('upgrade: an upstream that refuses connections gets the client a 502 that does not name it', async (t) => {
  const { gateway, port, events } = await gatewayTo(t, await refusedUrl())
  const answer = await rawExchange(port, GOOD)
  const { status, body } = parseAnswer(answer.text)
  assert.equal(status, 502, answer.text)
  assert.doesNotMatch(body, /127\.0\.0\.1/)
  await assertNothingOpen(gateway, answer.closed)
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_CONNECT'])
})

test('upgrade: an upstream that accepts and never answers gets the client a 504 after timeouts.handshake', async (t) => {
  const upstream = await answeringUpstream(t)
  const { gateway, port, events } = await gatewayTo(t, upstream.url, { timeouts: { handshake: 300 } })
  const answer = await rawExchange(port, GOOD)
  assert.equal(parseAnswer(answer.text).status, 504, answer.text)
  await assertNothingOpen(gateway, answer.closed)
  assert.ok(await eventually(() => upstream.sockets.size === 0), 'the upstream socket stayed open')
  assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_UPSTREAM_TIMEOUT'])
})

test('upgrade: an upstream that answers bytes that are not HTTP gets the client a 502', (t) =>
  assertUpstreamProtocol502(t, 'SSH-2.0-OpenSSH_9.6\r\n\u0000\u0001garbage\r\n\r\n'))

// A client leaving while the upstream is slow to answer: however it leaves, the attempt ends at once (the
// handshake timeout is long, so only the client's leaving can close the upstream socket within the wait).
const LEAVING: Array<[string, (socket: Socket) => void]> = [
  ['goes away', (socket) => socket.destroy()],
  ['resets', (socket) => socket.resetAndDestroy()],
  // A later packet, then FIN: the gateway must keep reading during the handshake to see the close.
  ['sends more bytes and then closes', (socket) => { socket.write(maskedFrame('early')); socket.end() }],
]

for (const [how, leave] of LEAVING) {
  test(`upgrade: a client that ${how} while the upstream is slow to answer leaves no socket open on either side`, async (t) => {
    let requests = 0
    const upstream = await answeringUpstream(t, () => { requests++; return undefined })
    const { gateway, port, events } = await gatewayTo(t, upstream.url, { timeouts: { handshake: 60_000 } })
    const client = await rawClient(t, port)
    client.socket.write(GOOD)
    assert.ok(await eventually(() => requests === 1), 'the upgrade never reached the upstream')
    leave(client.socket)
    assert.ok(await eventually(() => upstream.sockets.size === 0), 'the upstream socket stayed open')
    await assertNothingOpen(gateway, true)
    assert.ok(await eventually(() => events.errors.length === 1))
    assert.deepEqual(events.errors.map((e) => e.error.code), ['SOCKGATE_ERR_CLIENT_ABORTED'])
  })
}

test('upgrade: frames sent in the same packet as the request are echoed back by a ws upstream after the 101', async (t) => {
  const upstream = await wsEchoUpstream(t)
  const { gateway, port, events } = await gatewayTo(t, upstream.url)
  const client = await rawClient(t, port)
  client.socket.write(Buffer.concat([Buffer.from(GOOD), maskedFrame('early bird')]))
  const echo = Buffer.concat([Buffer.from([0x81, 10]), Buffer.from('early bird')])
  assert.ok(await eventually(() => client.received().includes(echo)), `no echo in ${JSON.stringify(client.text())}`)
  const text = client.text()
  assert.match(text, /^HTTP\/1\.1 101 /)
  assert.equal(client.received().subarray(text.indexOf('\r\n\r\n') + 4).toString('latin1'), echo.toString('latin1'))
  assert.equal(events.opened.length, 1)
  client.socket.destroy()
  assert.ok(await eventually(() => gateway.status().tunnels.open === 0))
})

test('upgrade: frames sent in the same packet as the request reach the upstream only after it answered 101', async (t) => {
  let beforeAnswer = -1
  const { url } = await rawUpstream(t, (socket) => {
    let seen = Buffer.alloc(0)
    let answered = false
    socket.on('data', (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk])
      const end = seen.indexOf('\r\n\r\n')
      if (answered || end === -1) return
      answered = true
      // Give early bytes every chance to arrive too soon before answering.
      setTimeout(() => {
        beforeAnswer = seen.length - end - 4
        socket.write(switchingProtocols(seen.toString('latin1')))
        socket.on('data', () => {
          const frames = seen.subarray(end + 4)
          if (frames.length > 0) socket.write(Buffer.concat([Buffer.from([0x81, 5]), Buffer.from('after')]))
        })
      }, 150)
    })
  })
  const { port } = await gatewayTo(t, url)
  const client = await rawClient(t, port)
  client.socket.write(Buffer.concat([Buffer.from(GOOD), maskedFrame('early')]))
  assert.ok(await eventually(() => client.text().endsWith('after')), `no reply in ${JSON.stringify(client.text())}`)
  assert.equal(beforeAnswer, 0, 'the early frame reached the upstream before its 101')
})
