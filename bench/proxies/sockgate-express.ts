/** sockgate's Express adapter: `app.use(proxy)` and `proxy.attach(server)`. */
import { createServer } from 'node:http'
import express, { type RequestHandler } from 'express'
import { importProject, type MiddlewareModule } from './sockgate-api.js'
import { listen, type StartProxy } from './listen.js'

export const start: StartProxy = async (target) => {
  const { sockgate } = await importProject<MiddlewareModule<RequestHandler>>('adapters/express.js')
  const proxy = sockgate({ target })
  const app = express()
  app.use(proxy)
  const server = createServer(app)
  proxy.attach(server)
  return listen(server)
}
