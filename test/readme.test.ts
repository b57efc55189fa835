/**
 * The README's examples, copied out of README.md at test time and run as
 * written (issue 8): only the upstream URLs and the listen port differ, and
 * `sockgate` resolves to this checkout's sources.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { readmeExamples, roundTrips, scratchProject, socketIoNodes, startExample, withUpstreams, type TransportMode } from './helpers/examples.js'

const examples = readmeExamples(readFileSync(new URL('../README.md', import.meta.url), 'utf8'))
const MODES: TransportMode[] = ['polling', 'websocket', 'default']
/** Enough acked emits that every poll after the handshake has to reach the session's node. */
const TRIPS = 5

test('README: has an example for Express, Koa, Fastify and the core', () => {
  const names = examples.map((e) => e.name)
  for (const wanted of [/Express/, /Koa/, /Fastify/, /core/]) {
    assert.ok(names.some((name) => wanted.test(name)), `no ${wanted} example among the README's ts blocks: ${names.join(', ')}`)
  }
})

for (const example of examples) {
  test(`README: the "${example.name}" example carries Socket.IO over polling, WebSocket and an upgrade`, async (t) => {
    const nodes = await socketIoNodes(t, 2)
    const code = withUpstreams(example.code, nodes.map((n) => n.url))
    assert.notEqual(code, example.code, 'the example names none of the README upstreams, so it would not reach the test servers')
    const url = await startExample(t, await scratchProject(t, { linkModules: true }), code, { sources: true })

    for (const mode of MODES) {
      await t.test(`transports: ${mode}`, async (t) => {
        const { nodes: acked, transport } = await roundTrips(t, url, mode, TRIPS)
        assert.equal(acked.length, TRIPS)
        assert.equal(new Set(acked).size, 1, `one session, one node: ${acked.join(', ')}`)
        assert.ok(nodes.some((n) => n.name === acked[0]), `acked by ${acked[0]}, not a test upstream`)
        assert.equal(transport, mode === 'polling' ? 'polling' : 'websocket')
      })
    }
  })
}
