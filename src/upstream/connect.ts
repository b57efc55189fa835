import net from 'node:net'
import tls from 'node:tls'
import { UpstreamConnectError, UpstreamTimeoutError } from '../errors.js'
import type { UpstreamServer } from './server.js'
import type { UpstreamTlsOptions } from '../types.js'

/**
 * Open a TCP (or TLS, for `https:`/`wss:`) connection to an upstream server,
 * giving up after `timeoutMs`. Resolves with the connected socket; rejects
 * with `UpstreamConnectError` or `UpstreamTimeoutError` and leaves no socket
 * behind. `allowHalfOpen` so a tunnel can forward a FIN without closing the
 * other direction.
 */
export function connectUpstream (server: UpstreamServer, timeoutMs: number, tlsOptions: UpstreamTlsOptions | null): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const tcp = net.connect({ host: server.hostname, port: server.port, allowHalfOpen: true })
    // TLS runs over our own half-open-capable TCP socket (tls.connect has no allowHalfOpen of its own).
    const socket = server.secure
      ? tls.connect({
        socket: tcp,
        servername: tlsOptions?.servername ?? (net.isIP(server.hostname) === 0 ? server.hostname : undefined),
        ca: tlsOptions?.ca,
        rejectUnauthorized: tlsOptions?.rejectUnauthorized ?? true,
        ALPNProtocols: ['http/1.1'],
      })
      : tcp
    const timer = setTimeout(() => {
      socket.destroy()
      tcp.destroy()
      done(new UpstreamTimeoutError(server.url, 'connect', timeoutMs))
    }, timeoutMs)
    const onError = (err: Error): void => {
      socket.destroy()
      tcp.destroy()
      done(new UpstreamConnectError(server.url, err))
    }
    const onConnect = (): void => done()
    function done (err?: Error): void {
      clearTimeout(timer)
      socket.removeListener('error', onError)
      tcp.removeListener('error', onError)
      socket.removeListener(server.secure ? 'secureConnect' : 'connect', onConnect)
      if (err === undefined) resolve(socket)
      else reject(err)
    }
    socket.once('error', onError)
    if (socket !== tcp) tcp.once('error', onError)
    socket.once(server.secure ? 'secureConnect' : 'connect', onConnect)
  })
}
