import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { reencodeBody, withBodyLength } from '../src/body.js'

/** The parts of a request `reencodeBody` reads: its headers and what a parser left in `body`. */
function parsedRequest (headers: Record<string, string>, body: unknown): IncomingMessage & { body?: unknown } {
  return { headers: { 'content-length': '10', ...headers }, body } as unknown as IncomingMessage & { body?: unknown }
}

test('reencodeBody: JSON types are encoded as JSON, +json included', () => {
  assert.equal(reencodeBody(parsedRequest({ 'content-type': 'application/json; charset=utf-8' }, { a: [1, 'é'] }), 1000)?.toString(), '{"a":[1,"é"]}')
  assert.equal(reencodeBody(parsedRequest({ 'content-type': 'application/merge-patch+json' }, null), 1000)?.toString(), 'null')
})

test('reencodeBody: a Buffer or a string is sent as it is, whatever the type', () => {
  assert.deepEqual(reencodeBody(parsedRequest({ 'content-type': 'image/png' }, Buffer.from([1, 2])), 1000), Buffer.from([1, 2]))
  assert.equal(reencodeBody(parsedRequest({ 'content-type': 'application/json' }, '{ "raw" : 1 }'), 1000)?.toString(), '{ "raw" : 1 }')
})

test('reencodeBody: a form with repeated and nested keys is encoded as a form', () => {
  const form = { a: ['1', '2'], user: { name: 'Ann Lee', tags: ['x'] }, n: 3 }
  const bytes = reencodeBody(parsedRequest({ 'content-type': 'application/x-www-form-urlencoded' }, form), 1000)
  assert.equal(decodeURIComponent(bytes!.toString()), 'a=1&a=2&user[name]=Ann+Lee&user[tags]=x&n=3')
})

test('reencodeBody: what cannot be encoded again is refused with SOCKGATE_ERR_BODY_CONSUMED, naming the type', () => {
  for (const [type, body] of [['multipart/form-data; boundary=x', { file: {} }], ['application/json', undefined], ['', undefined],
    ['application/x-www-form-urlencoded', { when: new Date(0) }]] as const) {
    assert.throws(() => reencodeBody(parsedRequest(type === '' ? {} : { 'content-type': type }, body), 1000),
      { code: 'SOCKGATE_ERR_BODY_CONSUMED', statusCode: 500 }, type)
  }
})

test('reencodeBody: a request without a body gives null, and a body past the limit is a 413', () => {
  assert.equal(reencodeBody(parsedRequest({ 'content-length': '0' }, {}), 1000), null)
  assert.throws(() => reencodeBody(parsedRequest({ 'content-type': 'text/plain' }, 'x'.repeat(11)), 10), { code: 'SOCKGATE_ERR_BODY_TOO_LARGE' })
})

test('withBodyLength: the new length replaces Content-Length, and Content-Encoding and Transfer-Encoding go', () => {
  assert.deepEqual(withBodyLength(['Host', 'a', 'Content-Length', '99', 'Content-Encoding', 'gzip', 'Transfer-Encoding', 'chunked', 'X', '1'], 12),
    ['Host', 'a', 'X', '1', 'Content-Length', '12'])
})
