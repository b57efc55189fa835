import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { pathMatches } from './route.js'
import { BadRequestError, NoRouteError, type SockgateError } from './errors.js'
import { writeSocketError } from './respond.js'

/** Handles one upgrade; returns false to let the next handler (or the app's own listeners) have it. */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => boolean

/** Told about a CONNECT the server refused (the gateway reports it as `proxy:error`). */
export type ConnectRefused = (error: SockgateError, req: IncomingMessage) => void

interface Entry { prefix: string, handler: UpgradeHandler }

/**
 * Kept on the server itself under a registered symbol: every gateway and
 * adapter on one server, even from two copies of sockgate, shares the one
 * dispatcher, and it goes away with the server.
 */
const DISPATCHER = Symbol.for('sockgate.upgradeDispatcher')

type Dispatched = Server & { [DISPATCHER]?: UpgradeDispatcher }

/**
 * The one place an attached server's upgrades are decided.
 *
 * Node calls every 'upgrade' listener for every upgrade, so a second
 * listener (an app's own `ws` server, another sockgate mount) would answer
 * sockets sockgate already tunnels, and the other way round. So the
 * dispatcher sees an upgrade before any listener does: the handler with the
 * longest matching prefix gets the socket; if none takes it, the app's own
 * listeners get it as if sockgate were not there; if there are none, the
 * client gets 404 and the socket closes rather than hanging.
 *
 * Only the upgrade event is intercepted: the server's `emit` gets an own
 * property that passes every other event straight on (no allocation), and
 * the original comes back when the server closes.
 */
class UpgradeDispatcher {
  private readonly entries: Entry[] = []
  private readonly server: Dispatched
  /** The server's own `emit` property before ours (usually none: the prototype's). */
  private readonly ownEmit: PropertyDescriptor | undefined
  /** Ours, to tell whether someone wrapped `emit` again after us. */
  private readonly emit: Server['emit']
  private connectRefused: ConnectRefused | undefined

  constructor (server: Dispatched) {
    this.server = server
    this.ownEmit = Object.getOwnPropertyDescriptor(server, 'emit')
    const emit = server.emit
    const dispatch = this.dispatch.bind(this)
    this.emit = server.emit = function (this: Server, event: string | symbol) {
      // `arguments` rather than a rest parameter: every other event passes through without an allocation.
      if (event === 'upgrade' && dispatch(arguments[1], arguments[2], arguments[3])) return true
      return emit.apply(this, arguments as unknown as Parameters<Server['emit']>)
    } as Server['emit']
    server.on('upgrade', this.noHandler)
    server.on('connect', this.refuseConnect)
    server.once('close', this.uninstall)
    server[DISPATCHER] = this
  }

  static of (server: Server): UpgradeDispatcher {
    return (server as Dispatched)[DISPATCHER] ?? new UpgradeDispatcher(server)
  }

  add (prefix: string, handler: UpgradeHandler): () => void {
    const entry = { prefix, handler }
    this.entries.push(entry)
    this.entries.sort((a, b) => b.prefix.length - a.prefix.length)
    return () => {
      const i = this.entries.indexOf(entry)
      if (i !== -1) this.entries.splice(i, 1)
    }
  }

  /** CONNECT refusals are told to the first gateway that asked; one listener per server answers them. */
  reportConnectTo (listener: ConnectRefused): void {
    this.connectRefused ??= listener
  }

  private dispatch (req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const path = req.url ?? '/'
    for (const entry of this.entries) {
      if (pathMatches(entry.prefix, path) && entry.handler(req, socket, head)) return true
    }
    return false
  }

  /**
   * Registered so Node treats requests with `Connection: upgrade` as upgrades even when we are alone;
   * reached only when no handler took the upgrade: answered unless the app has a listener of its own.
   */
  private readonly noHandler = (req: IncomingMessage, socket: Duplex): void => {
    if (this.server.listenerCount('upgrade') > 1) return
    const url = req.url ?? '/'
    // An absolute-form or authority-form target is the client's mistake, not a missing route.
    writeSocketError(socket, url.startsWith('/') ? new NoRouteError(req.headers.host ?? '', url) : BadRequestError.notAPath())
  }

  /**
   * Node never passes CONNECT to the request handler, and destroys the socket without a word when nobody
   * listens: answer 400, unless the server has a `'connect'` listener of its own.
   */
  private readonly refuseConnect = (req: IncomingMessage, socket: Duplex): void => {
    if (this.server.listenerCount('connect') > 1) return
    const error = new BadRequestError('CONNECT is not proxied')
    this.connectRefused?.(error, req)
    writeSocketError(socket, error)
  }

  private readonly uninstall = (): void => {
    const server = this.server
    // Whoever wrapped `emit` after us keeps their wrapper; ours then only passes events on (no entries left).
    if (server.emit === this.emit) {
      if (this.ownEmit === undefined) delete (server as Partial<Server>).emit
      else Object.defineProperty(server, 'emit', this.ownEmit)
    }
    server.removeListener('upgrade', this.noHandler)
    server.removeListener('connect', this.refuseConnect)
    this.entries.length = 0
    delete server[DISPATCHER]
  }
}

/**
 * Register an upgrade handler on `server` for requests under `prefix`
 * (longest prefix first among the server's handlers; see
 * {@link UpgradeDispatcher}). Every handler of a server goes when the
 * server closes; attach again after listening anew.
 *
 * Returns a function that removes the handler again.
 */
export function registerUpgradeHandler (server: Server, prefix: string, handler: UpgradeHandler): () => void {
  return UpgradeDispatcher.of(server).add(prefix, handler)
}

/**
 * Answer CONNECT on `server` with 400 (see {@link UpgradeDispatcher}),
 * telling `listener` about each one when it is the first to ask.
 */
export function refuseConnect (server: Server, listener: ConnectRefused): void {
  UpgradeDispatcher.of(server).reportConnectTo(listener)
}
