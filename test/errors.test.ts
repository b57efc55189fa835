import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import * as sockgate from '../src/index.js'
import { ERROR_CODES, SockgateError, type ErrorCode } from '../src/index.js'

/**
 * Every code of the `ErrorCode` union, once. The type annotation makes this
 * exhaustive at compile time: a code added to the union and missing here, or
 * a key here that is not in the union, fails `tsc`.
 */
const ALL_CODES: Record<ErrorCode, true> = {
  SOCKGATE_ERR_INVALID_OPTION: true,
  SOCKGATE_ERR_BAD_REQUEST: true,
  SOCKGATE_ERR_BAD_UPGRADE: true,
  SOCKGATE_ERR_UPGRADE_VERSION: true,
  SOCKGATE_ERR_BODY_TOO_LARGE: true,
  SOCKGATE_ERR_NO_ROUTE: true,
  SOCKGATE_ERR_NO_UPSTREAM: true,
  SOCKGATE_ERR_CLOSED: true,
  SOCKGATE_ERR_UPSTREAM_CONNECT: true,
  SOCKGATE_ERR_UPSTREAM_TIMEOUT: true,
  SOCKGATE_ERR_UPSTREAM_PROTOCOL: true,
  SOCKGATE_ERR_UPGRADE_REFUSED: true,
  SOCKGATE_ERR_CLIENT_ABORTED: true,
  SOCKGATE_ERR_CLIENT_TIMEOUT: true,
  SOCKGATE_ERR_FORBIDDEN: true,
  SOCKGATE_ERR_BODY_CONSUMED: true,
  SOCKGATE_ERR_STICKY_MISS: true,
  SOCKGATE_ERR_STICKY_STORE: true,
  SOCKGATE_ERR_HOOK: true,
  SOCKGATE_ERR_CONNECT_PROTOCOL: true,
  SOCKGATE_ERR_RATE_LIMITED: true,
  SOCKGATE_ERR_ORIGIN: true,
}

const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5001'), { code: 'ECONNREFUSED' })

/** One instance of every exported error subclass, built the way sockgate builds it. */
const SAMPLES: Record<string, () => SockgateError> = {
  InvalidOptionError: () => new sockgate.InvalidOptionError('timeouts.connect', 'must be an integer >= 1 (ms)'),
  BadRequestError: () => new sockgate.BadRequestError('CONNECT is not proxied'),
  BadUpgradeError: () => new sockgate.BadUpgradeError('Sec-WebSocket-Key must be a base64-encoded 16-byte nonce'),
  UpgradeVersionError: () => new sockgate.UpgradeVersionError('8'),
  BodyTooLargeError: () => new sockgate.BodyTooLargeError(1_048_576),
  NoRouteError: () => new sockgate.NoRouteError('chat.example.com', '/socket.io/'),
  NoUpstreamError: () => new sockgate.NoUpstreamError('socket_nodes'),
  GatewayClosedError: () => new sockgate.GatewayClosedError(),
  UpstreamConnectError: () => new sockgate.UpstreamConnectError('http://127.0.0.1:5001', refused),
  UpstreamTimeoutError: () => new sockgate.UpstreamTimeoutError('http://127.0.0.1:5001', 'request', 60_000),
  UpstreamProtocolError: () => new sockgate.UpstreamProtocolError('http://127.0.0.1:5001', 'the answer is not valid HTTP'),
  UpgradeRefusedError: () => new sockgate.UpgradeRefusedError('http://127.0.0.1:5001', 404),
  ClientAbortedError: () => new sockgate.ClientAbortedError(),
  ClientTimeoutError: () => new sockgate.ClientTimeoutError(60_000),
  ForbiddenError: () => new sockgate.ForbiddenError('the status page'),
  BodyConsumedError: () => new sockgate.BodyConsumedError('multipart/form-data'),
  StickyMissError: () => new sockgate.StickyMissError('http://127.0.0.1:5001', 'AbC123', 'http://127.0.0.1:5001'),
  StickyStoreError: () => new sockgate.StickyStoreError('socket_nodes', 'ioredis', 'did not answer within 150 ms'),
  HookError: () => new sockgate.HookError('authorize', new Error('token store down')),
  ConnectProtocolError: () => new sockgate.ConnectProtocolError(),
  RateLimitedError: () => new sockgate.RateLimitedError('203.0.113.7', 'requestsPerSecond', '10 per second, burst 10', 1),
  OriginRefusedError: () => new sockgate.OriginRefusedError('https://evil.example'),
}

/** Names of the classes the package exports that extend SockgateError. */
function exportedSubclasses (): string[] {
  return Object.entries(sockgate)
    .filter(([, value]) => typeof value === 'function' && value.prototype instanceof SockgateError)
    .map(([name]) => name)
    .sort()
}

interface DocRow { anchor: string, code: string, status: string }

/** The rows of the code table in docs/errors.md: the anchor id, the code shown, the status column. */
async function documentedRows (): Promise<{ text: string, rows: DocRow[] }> {
  const text = await readFile(new URL('../docs/errors.md', import.meta.url), 'utf8')
  const rows: DocRow[] = []
  for (const line of text.split('\n')) {
    if (!line.startsWith('| <a id=')) continue
    const cells = line.split('|').slice(1, -1).map((c) => c.trim())
    const match = /^<a id="([^"]+)"><\/a>`([^`]+)`$/.exec(cells[0] ?? '')
    assert.ok(match !== null, `a row of docs/errors.md does not start with an anchor and a code: ${line}`)
    rows.push({ anchor: match[1]!, code: match[2]!, status: cells[1] ?? '' })
  }
  return { text, rows }
}

// Codes: exported list, type and docs agree

test('errors: ERROR_CODES holds every code of the ErrorCode type exactly once', () => {
  assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length, 'ERROR_CODES repeats a code')
  assert.deepEqual([...ERROR_CODES].sort(), Object.keys(ALL_CODES).sort())
})

test('errors: ERROR_CODES is frozen', () => {
  assert.ok(Object.isFrozen(ERROR_CODES))
})

test('errors: every code is spelled SOCKGATE_ERR_ and upper-case words', () => {
  for (const code of ERROR_CODES) assert.match(code, /^SOCKGATE_ERR_[A-Z]+(_[A-Z]+)*$/)
})

test('errors: docs/errors.md has exactly one anchored row per code', async () => {
  const { rows } = await documentedRows()
  assert.deepEqual(rows.map((r) => r.anchor).sort(), [...ERROR_CODES].sort())
})

test('errors: each row of docs/errors.md shows the code of its own anchor', async () => {
  const { rows } = await documentedRows()
  for (const row of rows) assert.equal(row.code, row.anchor)
})

test('errors: docs/errors.md mentions no code that does not exist', async () => {
  const { text } = await documentedRows()
  const known = new Set<string>(ERROR_CODES)
  const unknown = [...new Set(text.match(/SOCKGATE_ERR_[A-Z_]+/g) ?? [])].filter((code) => !known.has(code))
  assert.deepEqual(unknown, [])
})

test('errors: the status documented for each code is the status its error carries', async () => {
  const { rows } = await documentedRows()
  const byCode = new Map(Object.values(SAMPLES).map((make) => { const e = make(); return [e.code, e] }))
  for (const row of rows) {
    const error = byCode.get(row.code as ErrorCode)
    assert.ok(error !== undefined, `no sample error for ${row.code}`)
    if (row.code === 'SOCKGATE_ERR_INVALID_OPTION' || row.code === 'SOCKGATE_ERR_CONNECT_PROTOCOL') assert.equal(row.status, '–')
    else if (row.code === 'SOCKGATE_ERR_UPGRADE_REFUSED') assert.equal(row.status, "the upstream's")
    else assert.equal(row.status, String(error.statusCode), `status of ${row.code}`)
  }
})

// Error classes

test('errors: every exported SockgateError subclass has a sample in this test', () => {
  assert.deepEqual(exportedSubclasses(), Object.keys(SAMPLES).sort())
})

test('errors: every code has exactly one error subclass', () => {
  const codes = Object.values(SAMPLES).map((make) => make().code)
  assert.deepEqual([...codes].sort(), [...ERROR_CODES].sort())
})

test('errors: every error subclass is a SockgateError named after its class', () => {
  for (const [name, make] of Object.entries(SAMPLES)) {
    const error = make()
    assert.ok(error instanceof SockgateError, name)
    assert.ok(error instanceof Error, name)
    assert.equal(error.name, name)
  }
})

test('errors: every error subclass carries a known code and an HTTP status', () => {
  for (const [name, make] of Object.entries(SAMPLES)) {
    const error = make()
    assert.ok(ERROR_CODES.includes(error.code), `${name}: unknown code ${error.code}`)
    assert.ok(Number.isInteger(error.statusCode), `${name}: statusCode ${error.statusCode}`)
    // Thrown at set-up, never answered: no status.
    if (name === 'InvalidOptionError' || name === 'ConnectProtocolError') assert.equal(error.statusCode, 0)
    else assert.ok(error.statusCode >= 400 && error.statusCode <= 599, `${name}: statusCode ${error.statusCode}`)
  }
})

test('errors: every error message is a sentence', () => {
  for (const [name, make] of Object.entries(SAMPLES)) {
    const { message } = make()
    assert.doesNotMatch(message, /\s{2}|\n|^\s|\s$/, `${name}: stray whitespace in ${JSON.stringify(message)}`)
    if (name === 'InvalidOptionError') {
      // The option path, then the rule it broke (docs/options.md): "timeouts.connect must be an integer >= 1 (ms)".
      assert.match(message, /^[A-Za-z][\w.[\]]* [a-z].*[^.\s]$/, `${name}: ${JSON.stringify(message)}`)
    } else {
      assert.match(message, /^[A-Z].*[^.]\.$/, `${name}: ${JSON.stringify(message)}`)
    }
  }
})

test('errors: the message of an option error starts with the option path', () => {
  assert.equal(SAMPLES.InvalidOptionError!().message, 'timeouts.connect must be an integer >= 1 (ms)')
})

test('errors: an upgrade refusal carries the status the upstream answered with', () => {
  assert.equal(new sockgate.UpgradeRefusedError('http://127.0.0.1:5001', 302).statusCode, 302)
})

test('errors: a wrapped low-level failure is kept as cause and named in the message', () => {
  const error = SAMPLES.UpstreamConnectError!()
  assert.equal(error.cause, refused)
  assert.match(error.message, /ECONNREFUSED/)
})

test('errors: upstream failures name the upstream in the message for the operator', () => {
  for (const name of ['UpstreamConnectError', 'UpstreamTimeoutError', 'UpstreamProtocolError', 'UpgradeRefusedError']) {
    assert.match(SAMPLES[name]!().message, /http:\/\/127\.0\.0\.1:5001/, name)
  }
})
