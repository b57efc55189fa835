/** sockgate's Koa adapter: `app.use(proxy)` and `proxy.attach(server)`. */
import { createServer } from 'node:http'
import Koa, { type Middleware } from 'koa'
import { importProject, type MiddlewareModule } from './sockgate-api.js'
import { listen, type StartProxy } from './listen.js'

export const start: StartProxy = async (target) => {
  const { sockgate } = await importProject<MiddlewareModule<Middleware>>('adapters/koa.js')
  const proxy = sockgate({ target })
  const app = new Koa()
  app.use(proxy)
  const server = createServer(app.callback())
  proxy.attach(server)
  return listen(server)
}
