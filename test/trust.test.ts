import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compileTrust, isValidTrustEntry, resolveClientAddress, unmapAddress } from '../src/trust.js'
import { InvalidOptionError } from '../src/errors.js'

test('trust: false trusts no hop', () => {
  const trust = compileTrust(false)
  assert.equal(trust('127.0.0.1', 0), false)
  assert.equal(trust('10.0.0.1', 3), false)
})

test('trust: true trusts every hop', () => {
  const trust = compileTrust(true)
  assert.equal(trust('203.0.113.9', 0), true)
  assert.equal(trust('not-an-address', 7), true)
})

test('trust: a number n trusts hops 0 to n-1 whatever the address', () => {
  const trust = compileTrust(2)
  assert.equal(trust('203.0.113.9', 0), true)
  assert.equal(trust('203.0.113.9', 1), true)
  assert.equal(trust('127.0.0.1', 2), false)
})

test('trust: a hop count of 0 trusts nothing', () => {
  assert.equal(compileTrust(0)('127.0.0.1', 0), false)
})

test('trust: a list matches a single IPv4 address exactly', () => {
  const trust = compileTrust(['127.0.0.1'])
  assert.equal(trust('127.0.0.1', 0), true)
  assert.equal(trust('127.0.0.2', 0), false)
})

test('trust: a list matches an IPv4 CIDR', () => {
  const trust = compileTrust(['10.0.0.0/8'])
  assert.equal(trust('10.255.3.4', 0), true)
  assert.equal(trust('11.0.0.1', 0), false)
})

test('trust: a list matches a single IPv6 address', () => {
  const trust = compileTrust(['::1'])
  assert.equal(trust('::1', 0), true)
  assert.equal(trust('0:0:0:0:0:0:0:1', 0), true)
  assert.equal(trust('::2', 0), false)
})

test('trust: a list matches an IPv6 CIDR', () => {
  const trust = compileTrust(['fd00::/8'])
  assert.equal(trust('fd12:3456::1', 0), true)
  assert.equal(trust('fe80::1', 0), false)
})

test('trust: an IPv4-mapped IPv6 peer matches an IPv4 entry', () => {
  const trust = compileTrust(['127.0.0.1', '192.168.0.0/16'])
  assert.equal(trust('::ffff:127.0.0.1', 0), true)
  assert.equal(trust('::ffff:192.168.4.5', 0), true)
  assert.equal(trust('::ffff:8.8.8.8', 0), false)
})

test('trust: an IPv4 entry does not match an unrelated IPv6 address', () => {
  assert.equal(compileTrust(['0.0.0.0/0'])('2001:db8::1', 0), false)
})

test('trust: the list ignores the hop number', () => {
  const trust = compileTrust(['10.0.0.0/8'])
  assert.equal(trust('10.0.0.1', 5), true)
})

test('trust: loopback names 127.0.0.0/8 and ::1', () => {
  const trust = compileTrust(['loopback'])
  assert.equal(trust('127.0.0.1', 0), true)
  assert.equal(trust('127.9.9.9', 0), true)
  assert.equal(trust('::1', 0), true)
  assert.equal(trust('10.0.0.1', 0), false)
})

test('trust: linklocal names 169.254.0.0/16 and fe80::/10', () => {
  const trust = compileTrust(['linklocal'])
  assert.equal(trust('169.254.1.1', 0), true)
  assert.equal(trust('fe80::1', 0), true)
  assert.equal(trust('127.0.0.1', 0), false)
})

test('trust: uniquelocal names the private IPv4 ranges and fc00::/7', () => {
  const trust = compileTrust(['uniquelocal'])
  for (const address of ['10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', 'fc00::1', 'fd00::1']) {
    assert.equal(trust(address, 0), true, address)
  }
  assert.equal(trust('172.32.0.1', 0), false)
  assert.equal(trust('8.8.8.8', 0), false)
})

test('trust: a list never trusts something that is not an address', () => {
  const trust = compileTrust(['0.0.0.0/0', '::/0'])
  assert.equal(trust('unknown', 0), false)
  assert.equal(trust('', 0), false)
})

test('trust: an empty list trusts nothing', () => {
  assert.equal(compileTrust([])('127.0.0.1', 0), false)
})

test('trust: isValidTrustEntry accepts addresses, CIDRs and the three names', () => {
  for (const entry of ['127.0.0.1', '10.0.0.0/8', '0.0.0.0/0', '::1', 'fd00::/8', '::/0', '2001:db8::/128', 'loopback', 'linklocal', 'uniquelocal']) {
    assert.equal(isValidTrustEntry(entry), true, entry)
  }
})

test('trust: isValidTrustEntry rejects prefixes past the address length', () => {
  assert.equal(isValidTrustEntry('10.0.0.0/33'), false)
  assert.equal(isValidTrustEntry('fd00::/129'), false)
})

test('trust: isValidTrustEntry rejects host names and malformed CIDRs', () => {
  for (const entry of ['', 'localhost', '1.2.3', '10.0.0.0/', '10.0.0.0/8/8', '10.0.0.0/-1', '10.0.0.0/0x8', 'Loopback']) {
    assert.equal(isValidTrustEntry(entry), false, entry)
  }
})

test('trust: compileTrust names the index of a bad list entry', () => {
  assert.throws(() => compileTrust(['127.0.0.1', 'localhost']), (err: unknown) => {
    assert.ok(err instanceof InvalidOptionError)
    assert.equal(err.code, 'SOCKGATE_ERR_INVALID_OPTION')
    assert.match(err.message, /^trustProxy\[1\] must be an IP address/)
    return true
  })
})

test('trust: compileTrust refuses a negative or fractional hop count', () => {
  assert.throws(() => compileTrust(-1), /^InvalidOptionError: trustProxy must be a whole number of hops/)
  assert.throws(() => compileTrust(1.5), /trustProxy must be a whole number of hops/)
})

test('trust: compileTrust refuses a comma-separated string and shows the list form', () => {
  assert.throws(() => compileTrust('loopback, 10.0.0.0/8' as unknown as string[]), /trustProxy must be a list, not a string/)
})

test('trust: compileTrust uses the option path it is given', () => {
  assert.throws(() => compileTrust(['nope'], 'upstreams.a.trustProxy'), /^InvalidOptionError: upstreams\.a\.trustProxy\[0\]/)
})

test('trust: unmapAddress strips ::ffff: from IPv4-mapped addresses only', () => {
  assert.equal(unmapAddress('::ffff:127.0.0.1'), '127.0.0.1')
  assert.equal(unmapAddress('::FFFF:10.0.0.1'), '10.0.0.1')
  assert.equal(unmapAddress('::ffff:abcd'), '::ffff:abcd')
  assert.equal(unmapAddress('2001:db8::1'), '2001:db8::1')
  assert.equal(unmapAddress('10.0.0.1'), '10.0.0.1')
})

test('resolve: an untrusted peer is the client whatever X-Forwarded-For says', () => {
  assert.equal(resolveClientAddress('203.0.113.9', '1.1.1.1, 2.2.2.2', compileTrust(['loopback'])), '203.0.113.9')
})

test('resolve: without X-Forwarded-For the peer is the client', () => {
  const trust = compileTrust(true)
  assert.equal(resolveClientAddress('127.0.0.1', undefined, trust), '127.0.0.1')
  assert.equal(resolveClientAddress('127.0.0.1', '', trust), '127.0.0.1')
})

test('resolve: behind one trusted proxy the right-most entry is the client', () => {
  const trust = compileTrust(['loopback'])
  assert.equal(resolveClientAddress('127.0.0.1', '203.0.113.9', trust), '203.0.113.9')
})

test('resolve: spoofed entries left of the first untrusted address are ignored', () => {
  const trust = compileTrust(['10.0.0.0/8'])
  assert.equal(resolveClientAddress('10.0.0.2', '6.6.6.6, 203.0.113.9', trust), '203.0.113.9')
})

test('resolve: walks through every trusted hop', () => {
  const trust = compileTrust(['10.0.0.0/8'])
  assert.equal(resolveClientAddress('10.0.0.1', '6.6.6.6, 198.51.100.7, 10.0.0.3, 10.0.0.2', trust), '198.51.100.7')
})

test('resolve: when every hop is trusted the left-most entry is the client', () => {
  assert.equal(resolveClientAddress('10.0.0.1', '198.51.100.7, 10.0.0.2', compileTrust(true)), '198.51.100.7')
})

test('resolve: a hop count of 2 stops at the second entry from the right', () => {
  const trust = compileTrust(2)
  assert.equal(resolveClientAddress('10.0.0.1', '1.1.1.1, 2.2.2.2, 3.3.3.3', trust), '2.2.2.2')
})

test('resolve: a hop count of 1 takes the right-most entry', () => {
  assert.equal(resolveClientAddress('10.0.0.1', '1.1.1.1, 2.2.2.2', compileTrust(1)), '2.2.2.2')
})

test('resolve: empty entries are skipped and do not count as hops', () => {
  assert.equal(resolveClientAddress('10.0.0.1', ' , 1.1.1.1,, 2.2.2.2 , ', compileTrust(2)), '1.1.1.1')
})

test('resolve: an entry that is not an address ends the walk at the last address', () => {
  assert.equal(resolveClientAddress('10.0.0.1', 'unknown, 2.2.2.2', compileTrust(true)), '2.2.2.2')
  assert.equal(resolveClientAddress('10.0.0.1', 'evil', compileTrust(true)), '10.0.0.1')
})

test('resolve: ports and brackets in entries are dropped', () => {
  const trust = compileTrust(true)
  assert.equal(resolveClientAddress('10.0.0.1', '198.51.100.7:4711', trust), '198.51.100.7')
  assert.equal(resolveClientAddress('10.0.0.1', '[2001:db8::7]:4711', trust), '2001:db8::7')
  assert.equal(resolveClientAddress('10.0.0.1', '[2001:db8::8]', trust), '2001:db8::8')
})

test('resolve: a mapped peer is reported without ::ffff:', () => {
  assert.equal(resolveClientAddress('::ffff:203.0.113.9', undefined, compileTrust(false)), '203.0.113.9')
})

test('resolve: a mapped peer matches an IPv4 trust entry and its chain is used', () => {
  assert.equal(resolveClientAddress('::ffff:127.0.0.1', '198.51.100.7', compileTrust(['127.0.0.1'])), '198.51.100.7')
})

test('resolve: a mapped X-Forwarded-For entry is reported without ::ffff:', () => {
  assert.equal(resolveClientAddress('127.0.0.1', '::ffff:198.51.100.7', compileTrust(['loopback'])), '198.51.100.7')
})

test('resolve: IPv6 chains resolve like IPv4 ones', () => {
  const trust = compileTrust(['fd00::/8'])
  assert.equal(resolveClientAddress('fd00::1', '2001:db8::1, fd00::2', trust), '2001:db8::1')
})
