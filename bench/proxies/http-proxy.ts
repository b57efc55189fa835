/** node-http-proxy (`http-proxy`) on a bare node:http server, with `ws: true`. */
import { createServer, ServerResponse } from 'node:http'
import httpProxy from 'http-proxy'
import { keepAliveAgent, listen, type StartProxy } from './listen.js'

export const start: StartProxy = (target) => {
  const proxy = httpProxy.createProxyServer({ target, ws: true, agent: keepAliveAgent() })
  // http-proxy re-throws when nobody listens for 'error'; answer 502 or drop the socket instead.
  proxy.on('error', (_err, _req, res) => {
    if (res instanceof ServerResponse) {
      if (!res.headersSent) res.writeHead(502)
      res.end()
    } else {
      res.destroy()
    }
  })
  const server = createServer((req, res) => proxy.web(req, res))
  server.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head))
  return listen(server)
}
