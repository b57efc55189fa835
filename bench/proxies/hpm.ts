/** http-proxy-middleware 4 (httpxy inside) mounted in Express, with `ws: true` and the upgrade wired by hand. */
import { createServer } from 'node:http'
import express from 'express'
import { createProxyMiddleware } from 'http-proxy-middleware'
import { keepAliveAgent, listen, type StartProxy } from './listen.js'

export const start: StartProxy = (target) => {
  const proxy = createProxyMiddleware({
    target,
    ws: true,
    agent: keepAliveAgent(),
    // The default logger prints every upstream error; the harness counts errors itself.
    logger: { info () {}, warn () {}, error () {} },
  })
  const app = express()
  app.use(proxy)
  const server = createServer(app)
  // As its README recommends: without this the first upgrade would arrive before any
  // HTTP request has let the middleware find the server.
  server.on('upgrade', proxy.upgrade)
  return listen(server)
}
