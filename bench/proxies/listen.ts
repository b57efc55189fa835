/** Helpers shared by the proxy kinds. */
import { Agent, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/** Listens on 127.0.0.1, port 0, and resolves with the port the kernel chose. */
export function listen (server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      server.off('error', reject)
      resolve((server.address() as AddressInfo).port)
    })
  })
}

/**
 * The keep-alive agent handed to the peer proxies. Without one, http-proxy and
 * httpxy open a new upstream connection per request; nginx gets its `keepalive`
 * block and sockgate pools by design, so the peers get the same chance.
 */
export function keepAliveAgent (): Agent {
  return new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 256 })
}

/** Entry point of every proxy kind: start serving `target`, resolve with the port. */
export type StartProxy = (target: string) => Promise<number>
