import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import type { ServerResponse } from 'node:http'
import {
  gatewayServer, httpUpstream, rawUpstream, switchingProtocols, upgradeRequest, watchForCrashes,
} from './helpers/servers.js'

watchForCrashes()

/**
 * More than loopback's kernel buffers can hold (a few MiB each way): if the
 * gateway kept reading while the client does not, the upstream could write
 * all of it; with backpressure it is held back until the client reads.
 */
const TOTAL = 64 * 1024 * 1024
const CHUNK = Buffer.alloc(64 * 1024, 0x61)

/** Write `TOTAL` bytes, only as fast as the reader takes them; report how much was accepted so far. */
function writeWithBackpressure (write: (chunk: Buffer) => boolean, onDrain: (cb: () => void) => void, end: () => void): () => number {
  let written = 0
  const pump = (): void => {
    while (written < TOTAL) {
      written += CHUNK.length
      if (!write(CHUNK)) {
        onDrain(pump)
        return
      }
    }
    end()
  }
  pump()
  return () => written
}

/** Let the pipeline fill up while the client reads nothing. */
async function stall (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** Read everything the client socket still has coming, resuming it. */
function drainClient (socket: net.Socket): Promise<number> {
  return new Promise((resolve) => {
    let seen = 0
    socket.on('data', (c: Buffer) => { seen += c.length })
    socket.on('end', () => resolve(seen))
    socket.on('close', () => resolve(seen))
    socket.resume()
  })
}

async function pausedClient (t: TestContext, port: number, request: string): Promise<net.Socket> {
  const socket = net.connect({ port, host: '127.0.0.1' })
  t.after(() => { socket.destroy() })
  socket.on('error', () => {})
  await new Promise<void>((resolve) => socket.once('connect', resolve))
  socket.pause()
  socket.write(request)
  return socket
}

test('backpressure: a tunnel holds the upstream back while the client does not read, then delivers everything', async (t) => {
  let accepted = (): number => 0
  const upstream = await rawUpstream(t, (socket) => {
    socket.once('data', (req) => {
      socket.write(switchingProtocols(req.toString('latin1')))
      accepted = writeWithBackpressure((c) => socket.write(c), (cb) => socket.once('drain', cb), () => socket.end())
    })
  })
  const { port } = await gatewayServer(t, { target: upstream.url })
  const client = await pausedClient(t, port, upgradeRequest('/bulk'))
  await stall(1_500)
  const heldBack = accepted()
  assert.ok(heldBack < TOTAL / 2, `the upstream wrote ${heldBack} of ${TOTAL} bytes to a client that read nothing`)
  const received = await drainClient(client)
  assert.ok(received >= TOTAL, `the client received ${received} of ${TOTAL} bytes`)
})

test('backpressure: an HTTP response is paused while the client does not read, then delivered whole', async (t) => {
  let accepted = (): number => 0
  const upstream = await httpUpstream(t, (_req, res: ServerResponse) => {
    res.writeHead(200, { 'content-length': String(TOTAL) })
    accepted = writeWithBackpressure((c) => res.write(c), (cb) => res.once('drain', cb), () => res.end())
  })
  const { port } = await gatewayServer(t, { target: upstream.url })
  const client = await pausedClient(t, port, 'GET /bulk HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
  await stall(1_500)
  const heldBack = accepted()
  assert.ok(heldBack < TOTAL / 2, `the upstream wrote ${heldBack} of ${TOTAL} bytes to a client that read nothing`)
  const received = await drainClient(client)
  assert.ok(received > TOTAL, `the client received ${received} bytes (head and ${TOTAL}-byte body expected)`)
})
