import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  addHeaderToHead,
  appendListValue,
  isHopByHop,
  isToken,
  listItems,
  listsToken,
  listTokens,
  serializeHead,
} from '../src/http-syntax.js'

// isToken

test('http-syntax: isToken accepts letters, digits and every tchar of RFC 9110 §5.6.2', () => {
  for (const value of ['websocket', 'X-Forwarded-For', 'h2c', "!#$%&'*+-.^_`|~", 'a1']) assert.equal(isToken(value), true, value)
})

test('http-syntax: isToken refuses the empty string, separators, spaces and controls', () => {
  for (const value of ['', 'a b', 'a:b', 'a;b', 'a=b', 'a,b', '"a"', 'a/b', 'a\tb', 'a\r\nb', 'a\0', 'é']) {
    assert.equal(isToken(value), false, JSON.stringify(value))
  }
})

// isHopByHop

test('http-syntax: isHopByHop names the fields of RFC 9110 §7.6.1 and Trailer', () => {
  for (const name of ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']) {
    assert.equal(isHopByHop(name), true, name)
  }
  for (const name of ['host', 'content-length', 'x-forwarded-for', 'cookie']) assert.equal(isHopByHop(name), false, name)
})

test('http-syntax: isHopByHop also names what the message\'s Connection listed', () => {
  const listed = new Set(['x-session'])
  assert.equal(isHopByHop('x-session', listed), true)
  assert.equal(isHopByHop('x-other', listed), false)
  assert.equal(isHopByHop('x-session', null), false)
})

test('http-syntax: isHopByHop expects the name in lower case', () => {
  assert.equal(isHopByHop('Connection'), false)
})

// listItems, listTokens, listsToken

test('http-syntax: listItems trims the items and drops empty ones (RFC 9110 §5.6.1)', () => {
  assert.deepEqual(listItems(' a , ,b,, c '), ['a', 'b', 'c'])
  assert.deepEqual(listItems(',\t, '), [])
  assert.deepEqual(listItems(''), [])
})

test('http-syntax: listItems keeps the case of the items', () => {
  assert.deepEqual(listItems('2001:DB8::1, 10.0.0.1'), ['2001:DB8::1', '10.0.0.1'])
})

test('http-syntax: listItems of a value without a comma is that value, trimmed', () => {
  assert.deepEqual(listItems('  keep-alive '), ['keep-alive'])
})

test('http-syntax: listTokens lower-cases the items', () => {
  assert.deepEqual(listTokens('Keep-Alive, Upgrade ,,X-Session'), ['keep-alive', 'upgrade', 'x-session'])
})

test('http-syntax: listsToken finds a token in any item, whatever its case', () => {
  assert.equal(listsToken('keep-alive, Upgrade', 'upgrade'), true)
  assert.equal(listsToken('UPGRADE', 'upgrade'), true)
})

test('http-syntax: listsToken matches whole items only', () => {
  assert.equal(listsToken('upgraded, keep-alive', 'upgrade'), false)
  assert.equal(listsToken('up grade', 'upgrade'), false)
})

test('http-syntax: listsToken is false for a missing or empty header', () => {
  assert.equal(listsToken(undefined, 'upgrade'), false)
  assert.equal(listsToken('', 'upgrade'), false)
})

// appendListValue

test('http-syntax: appendListValue joins field lines with a comma and a space (RFC 9110 §5.3)', () => {
  assert.equal(appendListValue(appendListValue(undefined, ' 1.1.1.1 '), '2.2.2.2, 3.3.3.3'), '1.1.1.1, 2.2.2.2, 3.3.3.3')
})

test('http-syntax: appendListValue leaves the list as it was for an empty line', () => {
  assert.equal(appendListValue(undefined, '  '), undefined)
  assert.equal(appendListValue('1.1.1.1', ''), '1.1.1.1')
})

// serializeHead, addHeaderToHead

test('http-syntax: serializeHead writes the start line, one line per header and a blank line', () => {
  const head = serializeHead('GET /socket.io/?EIO=4&transport=websocket HTTP/1.1', ['Host', 'a.example', 'Connection', 'upgrade', 'Upgrade', 'websocket'])
  assert.equal(head, 'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: a.example\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n')
})

test('http-syntax: serializeHead with no headers ends right after the start line', () => {
  assert.equal(serializeHead('GET / HTTP/1.1', []), 'GET / HTTP/1.1\r\n\r\n')
})

test('http-syntax: addHeaderToHead puts one more field line before the blank line', () => {
  const head = serializeHead('HTTP/1.1 101 Switching Protocols', ['Upgrade', 'websocket'])
  assert.equal(addHeaderToHead(head, 'Set-Cookie', 'sg=abc; Path=/'),
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSet-Cookie: sg=abc; Path=/\r\n\r\n')
})
