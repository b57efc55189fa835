import net from 'node:net'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'

/**
 * A tiny L4 balancer, the way a Kubernetes Service or an AWS NLB sits in
 * front of several gateway replicas: each new TCP connection goes to the
 * next backend in turn, and bytes are piped both ways untouched (no HTTP
 * parsing, so keep-alive, long-polls and upgrades all pass as they are).
 */
export interface TcpBalancer {
  readonly port: number
  /** `http://127.0.0.1:PORT`, for clients. */
  readonly url: string
  /** Connections handed to each backend so far, in the order the backends were given. */
  connections (): number[]
  /** Connections open now, both sides. */
  open (): number
}

/**
 * Start a balancer on 127.0.0.1:0 over `backends` (ports on 127.0.0.1),
 * closed with every connection when the test ends. A backend that refuses
 * or resets ends the client's connection too: an L4 balancer cannot answer
 * for it.
 */
export async function tcpBalancer (t: TestContext, backends: readonly number[]): Promise<TcpBalancer> {
  if (backends.length === 0) throw new Error('tcpBalancer needs at least one backend port')
  const counts = backends.map(() => 0)
  const sockets = new Set<net.Socket>()
  let next = 0

  const track = (socket: net.Socket): void => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    // A reset on either side ends the pair (below); the error itself is expected, not a test failure.
    socket.on('error', () => {})
  }

  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const index = next
    next = (next + 1) % backends.length
    counts[index]!++
    const backend = net.connect({ port: backends[index]!, host: '127.0.0.1', allowHalfOpen: true })
    track(client)
    track(backend)
    // pipe() carries backpressure and half-close (end) each way; a destroyed side takes the other with it.
    client.pipe(backend)
    backend.pipe(client)
    client.once('close', () => backend.destroy())
    backend.once('close', () => client.destroy())
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  t.after(() => new Promise<void>((resolve) => {
    for (const socket of sockets) socket.destroy()
    server.close(() => resolve())
  }))
  const { port } = server.address() as AddressInfo
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    connections: () => [...counts],
    open: () => sockets.size,
  }
}
