/** sockgate's core on a bare node:http server: the figure the adapters are compared with. */
import { createServer } from 'node:http'
import { importProject, type CoreModule } from './sockgate-api.js'
import { listen, type StartProxy } from './listen.js'

export const start: StartProxy = async (target) => {
  const { createGateway } = await importProject<CoreModule>('src/index.js')
  const gateway = createGateway({ target })
  const server = createServer((req, res) => { gateway.handleRequest(req, res) })
  gateway.attach(server)
  return listen(server)
}
