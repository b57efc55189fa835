/** sockgate's Fastify plugin: `app.register(plugin, { target })`; it attaches to `app.server` itself. */
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyPluginAsync } from 'fastify'
import { importProject, type GatewayOptions } from './sockgate-api.js'
import type { StartProxy } from './listen.js'

export const start: StartProxy = async (target) => {
  const plugin = (await importProject<{ default: FastifyPluginAsync<GatewayOptions> }>('adapters/fastify.js')).default
  if (typeof plugin !== 'function') throw new Error('adapters/fastify.js has no default export plugin')
  const app = Fastify({ logger: false })
  await app.register(plugin, { target })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return (app.server.address() as AddressInfo).port
}
