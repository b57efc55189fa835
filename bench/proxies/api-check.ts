/**
 * Compile-time only: the API slice in sockgate-api.ts, which the proxy
 * children load by a computed specifier, must still match the real modules.
 * Type imports are erased, so this file costs nothing at run time; if the
 * public API drifts, `npm run typecheck` points here instead of the bench
 * failing in the middle of a run.
 */
import type { Server } from 'node:http'
import type * as Core from '../../src/index.js'
import type * as ExpressAdapter from '../../adapters/express.js'
import type * as KoaAdapter from '../../adapters/koa.js'
import type * as FastifyAdapter from '../../adapters/fastify.js'
import type { CoreModule, GatewayOptions } from './sockgate-api.js'

type Assert<T extends U, U> = T
interface Attachable { attach (server: Server): unknown }

export type CoreMatches = Assert<typeof Core, CoreModule>
export type ExpressMatches = Assert<ReturnType<typeof ExpressAdapter.sockgate>, Attachable>
export type KoaMatches = Assert<ReturnType<typeof KoaAdapter.sockgate>, Attachable>
export type ExpressTakesOptions = Assert<GatewayOptions, Parameters<typeof ExpressAdapter.sockgate>[0]>
export type KoaTakesOptions = Assert<GatewayOptions, Parameters<typeof KoaAdapter.sockgate>[0]>
export type FastifyHasDefault = Assert<typeof FastifyAdapter, { default: (...args: never[]) => unknown }>
