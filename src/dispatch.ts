import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { pathMatches } from './route.js'
import { BadRequestError, NoRouteError } from './errors.js'
import { writeSocketError } from './respond.js'

/** Handles one upgrade; returns false to let the next handler (or the app's own listeners) have it. */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => boolean

interface Entry { prefix: string, handler: UpgradeHandler }

interface Dispatcher {
  entries: Entry[]
  /** Registered so Node treats requests with `Connection: upgrade` as upgrades even when we are alone. */
  sentinel: (...args: unknown[]) => void
}

const dispatchers = new WeakMap<Server, Dispatcher>()

/**
 * Register an upgrade handler on `server` for requests under `prefix`.
 *
 * Node calls every 'upgrade' listener for every upgrade, so a second
 * listener (an app's own `ws` server, another sockgate mount) would answer
 * sockets sockgate already tunnels, and the other way round. So each server
 * gets one dispatcher that sees upgrades first: the handler with the longest
 * matching prefix gets the socket; if none takes it, the app's own listeners
 * get it as if sockgate were not there; if there are none, the client gets 404
 * and the socket closes rather than hanging.
 *
 * Returns a function that removes the handler again.
 */
export function registerUpgradeHandler (server: Server, prefix: string, handler: UpgradeHandler): () => void {
  let d = dispatchers.get(server)
  if (d === undefined) d = install(server)
  const entry = { prefix, handler }
  d.entries.push(entry)
  d.entries.sort((a, b) => b.prefix.length - a.prefix.length)
  const dispatcher = d
  return () => {
    const i = dispatcher.entries.indexOf(entry)
    if (i !== -1) dispatcher.entries.splice(i, 1)
  }
}

function install (server: Server): Dispatcher {
  const d: Dispatcher = {
    entries: [],
    sentinel: (...args: unknown[]) => {
      // Only reached when no sockgate handler took the upgrade: answer it unless the app has a listener of its own.
      if (server.listenerCount('upgrade') > 1) return
      const [req, socket] = args as [IncomingMessage, Duplex]
      const url = req.url ?? '/'
      // An absolute-form or authority-form target is the client's mistake, not a missing route.
      writeSocketError(socket, url.startsWith('/') ? new NoRouteError(req.headers.host ?? '', url) : new BadRequestError('the request target must be a path'))
    },
  }
  const emit = server.emit
  server.emit = function (this: Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'upgrade') {
      const [req, socket, head] = args as [IncomingMessage, Duplex, Buffer]
      const path = req.url ?? '/'
      for (const entry of d.entries) {
        if (pathMatches(entry.prefix, path) && entry.handler(req, socket, head)) return true
      }
    }
    return emit.apply(this, [event, ...args] as Parameters<Server['emit']>)
  } as Server['emit']
  server.on('upgrade', d.sentinel)
  dispatchers.set(server, d)
  return d
}
