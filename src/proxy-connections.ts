import type { Server, Socket } from 'node:net'
import { InvalidOptionError, ProxyProtocolError } from './errors.js'
import type { NormalizedProxyProtocol } from './options.js'
import { parseProxyHeader, proxyHeaderVersion, type ProxiedConnection, type ProxyHeader } from './proxy-protocol.js'

/** Told about every connection refused, with the peer's own address. */
export type ProxyRefused = (error: ProxyProtocolError, peer: string) => void

/**
 * Kept on the server under a registered symbol, as the upgrade dispatcher
 * is: every gateway on one server, even from two copies of sockgate, finds
 * the one reader, and it goes away with the server.
 */
const READER = Symbol.for('sockgate.proxyHeaderReader')
/** Set on each socket that passed the check, and on its TLSSocket: what a request's socket is asked. */
const CHECKED = Symbol.for('sockgate.proxyProtocolChecked')

type Reading = Server & { [READER]?: ProxyHeaderReader }
type Checkable = object & { [CHECKED]?: true, _parent?: unknown }

/** The socket properties a PROXY source replaces, so Express's `req.ip`, Koa's `ctx.ip` and Fastify's `request.ip` see it too. */
const PEER_PROPERTIES = ['remoteAddress', 'remotePort', 'remoteFamily'] as const

/**
 * Reads the PROXY protocol header at the start of every connection of one
 * server, before Node's HTTP parser (or TLS) sees a byte.
 *
 * The server's `emit` gets an own property that holds `'connection'` back:
 * the socket's first bytes are read (paused mode, `read()`), a trusted
 * peer's header is taken off and its source written over the socket's
 * `remoteAddress`/`remotePort`/`remoteFamily`, what follows the header is
 * put back (`unshift()`), and only then is `'connection'` emitted on, to
 * Node's HTTP or TLS listener and the app's. On an https server the header
 * comes before the TLS handshake, so the raw socket carries the address and
 * `'secureConnection'` copies it to the TLSSocket the app sees.
 *
 * Every connection is read with a deadline (`proxyProtocol.timeout`) and a
 * size bound (proxy-protocol.ts): a trusted peer that sends no valid header
 * in time is cut, and so is any other peer that starts with a header. Any
 * other peer's bytes go on untouched; one that stays silent past the
 * deadline is handed on as it is, to Node's own timeouts.
 */
class ProxyHeaderReader {
  /** The server's own `emit` property before ours (usually none: the prototype's). */
  private readonly ownEmit: PropertyDescriptor | undefined
  /** The `emit` ours wraps, which sockets are handed on to. */
  private readonly passOn: (this: Server, event: 'connection', socket: Socket) => boolean
  /** Ours, to tell whether someone wrapped `emit` again after us. */
  private readonly emit: Server['emit']

  constructor (private readonly server: Reading, readonly settings: NormalizedProxyProtocol, private readonly refused: ProxyRefused) {
    this.ownEmit = Object.getOwnPropertyDescriptor(server, 'emit')
    const emit = server.emit
    this.passOn = emit as ProxyHeaderReader['passOn']
    const read = this.read.bind(this)
    this.emit = server.emit = function (this: Server, event: string | symbol) {
      if (event === 'connection') {
        read(arguments[1])
        return true
      }
      if (event === 'secureConnection') carryPeer(arguments[1])
      return emit.apply(this, arguments as unknown as Parameters<Server['emit']>)
    } as Server['emit']
    // After the server's other 'close' listeners: the upgrade dispatcher, installed after us and so wrapping
    // our emit, gives it back to us first, and the server is left with its own.
    server.once('close', () => queueMicrotask(this.uninstall))
    server[READER] = this
  }

  /** Start reading headers on `server`, or check that the reader already there reads them the same way. */
  static install (server: Server, settings: NormalizedProxyProtocol, refused: ProxyRefused): void {
    const existing = (server as Reading)[READER]
    if (existing === undefined) {
      new ProxyHeaderReader(server, settings, refused) // eslint-disable-line no-new
      return
    }
    const other = existing.settings
    if (other.timeout !== settings.timeout || other.trustedList.join() !== settings.trustedList.join()) {
      throw new InvalidOptionError('proxyProtocol', 'differs from that of another gateway attached to this server; a server reads ' +
        'one PROXY header per connection, so give every gateway on it the same proxyProtocol')
    }
  }

  private read (socket: Socket): void {
    const peer = socket.remoteAddress ?? ''
    const trusted = this.settings.trusted(peer, 0)
    let bytes: Buffer = Buffer.alloc(0)
    const stop = (): void => {
      clearTimeout(timer)
      socket.removeListener('readable', onReadable)
      socket.removeListener('end', onGone)
      socket.removeListener('close', onGone)
      socket.removeListener('error', onGone)
    }
    const refuse = (error: ProxyProtocolError): void => {
      stop()
      socket.destroy()
      this.refused(error, peer)
    }
    const handOn = (rest: Buffer, header: ProxyHeader | undefined): void => {
      stop()
      if (rest.length > 0) socket.unshift(rest)
      if (header?.command === 'proxy') standFor(socket, header)
      ;(socket as Checkable)[CHECKED] = true
      this.passOn.call(this.server, 'connection', socket)
    }
    /** True once the bytes so far decide the connection. */
    const decide = (): boolean => {
      if (!trusted) {
        const version = proxyHeaderVersion(bytes)
        if (version === 'more') return false
        if (version === 'none') handOn(bytes, undefined)
        else refuse(ProxyProtocolError.fromUntrusted(peer))
        return true
      }
      const parse = parseProxyHeader(bytes)
      switch (parse.state) {
        case 'more': return false
        case 'absent':
          refuse(ProxyProtocolError.fromTrusted(peer, 'did not start with a PROXY protocol header'))
          return true
        case 'invalid':
          refuse(ProxyProtocolError.fromTrusted(peer, `sent a malformed PROXY protocol header (${parse.reason})`))
          return true
        case 'done':
          handOn(bytes.subarray(parse.length), parse.header)
          return true
      }
    }
    const onReadable = (): void => {
      let chunk: Buffer | null
      while ((chunk = socket.read() as Buffer | null) !== null) {
        bytes = bytes.length === 0 ? chunk : Buffer.concat([bytes, chunk])
        if (decide()) return
      }
    }
    // Before the header is decided, a peer that leaves (or resets) takes nothing with it: not a refusal.
    const onGone = (): void => {
      stop()
      socket.destroy()
    }
    const timer = setTimeout(() => {
      if (!trusted) return handOn(bytes, undefined)
      const ms = this.settings.timeout
      refuse(ProxyProtocolError.fromTrusted(peer, bytes.length === 0
        ? `sent nothing within proxyProtocol.timeout (${ms} ms)`
        : `sent no complete PROXY protocol header within proxyProtocol.timeout (${ms} ms)`))
    }, this.settings.timeout)
    socket.on('readable', onReadable)
    socket.on('end', onGone)
    socket.on('close', onGone)
    socket.on('error', onGone)
  }

  private readonly uninstall = (): void => {
    const server = this.server
    // Whoever wrapped `emit` after us keeps their wrapper; ours then goes on reading for them.
    if (server.emit === this.emit) {
      if (this.ownEmit === undefined) delete (server as Partial<Server>).emit
      else Object.defineProperty(server, 'emit', this.ownEmit)
    }
    delete server[READER]
  }
}

/** The socket stands for the client the header names, to everything that asks it. */
function standFor (socket: Socket, header: ProxiedConnection): void {
  Object.defineProperties(socket, {
    remoteAddress: { value: header.sourceAddress, configurable: true },
    remotePort: { value: header.sourcePort, configurable: true },
    remoteFamily: { value: header.family, configurable: true },
  })
}

/** A TLSSocket made over a checked raw socket (its `_parent`) gets the raw socket's client and mark. */
function carryPeer (tlsSocket: Checkable): void {
  const raw = tlsSocket._parent as Checkable | undefined
  if (raw?.[CHECKED] !== true) return
  for (const name of PEER_PROPERTIES) {
    const own = Object.getOwnPropertyDescriptor(raw, name)
    if (own !== undefined) Object.defineProperty(tlsSocket, name, own)
  }
  tlsSocket[CHECKED] = true
}

/**
 * Read a PROXY protocol header at the start of every connection `server`
 * takes from now on (see {@link ProxyHeaderReader}), telling `refused`
 * about each connection closed for it. Once per server; throws
 * `InvalidOptionError` when another gateway already reads them there with
 * other settings. Goes away when the server closes.
 */
export function readProxyHeaders (server: Server, settings: NormalizedProxyProtocol, refused: ProxyRefused): void {
  ProxyHeaderReader.install(server, settings, refused)
}

/** Whether `socket` (a request's) went through the PROXY header check of its server. */
export function proxyHeaderChecked (socket: object): boolean {
  return (socket as Checkable)[CHECKED] === true
}
