/**
 * The slice of the sockgate API the bench uses, and a loader for it.
 *
 * The modules are imported by a computed specifier on purpose: the core and
 * the adapters are written in parallel with this harness, so a missing module
 * must turn into "unavailable: <reason>" at run time instead of a compile error
 * in bench/. When they land, these shapes must match DESIGN.md's public API.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'

export interface GatewayOptions { target: string | string[] }

export interface Gateway {
  handleRequest (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): unknown
  handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): unknown
  attach (server: Server): unknown
}

export interface CoreModule { createGateway (options: GatewayOptions): Gateway }

/** Express and Koa adapters: a middleware with `.attach(server)`. */
export interface MiddlewareModule<M> { sockgate (options: GatewayOptions): M & { attach (server: Server): unknown } }

/** Imports a project module given relative to the repository root (`src/index.js`, `adapters/koa.js`). */
export async function importProject<T> (path: string): Promise<T> {
  const url = new URL(`../../${path}`, import.meta.url)
  return await import(url.href) as T
}
