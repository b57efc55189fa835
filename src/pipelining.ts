import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'

/**
 * The answer Node is writing on `socket`, if any. Node parses pipelined
 * requests all at once and calls the handlers without waiting, but writes
 * the answers one after the other: the one in progress is in the socket's
 * `_httpMessage`, and when it finishes Node hands the socket to the next.
 * The field is private, but it is the only record of what a connection
 * still owes; should a Node version drop it, nothing waits (as before).
 */
function pendingAnswer (socket: Duplex): ServerResponse | undefined {
  return (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined
}

/**
 * Run `go` once every earlier answer on the client connection `socket` is
 * out, that is when the answer Node is writing there, if any, is the one to
 * `req` itself. So pipelined requests are forwarded one at a time, as nginx
 * and HAProxy do, rather than each opening an upstream connection at once
 * (400 GETs in one write, 400 connections), and an upgrade behind a request
 * gets its 101 after that request's answer instead of before it (where the
 * answer would arrive inside the tunnel). An upgrade has no answer of its
 * own unless an adapter gave it one to run the app's hooks (Fastify).
 * Unpipelined traffic passes at once. When the connection closes first, `go`
 * never runs: nobody is left to answer.
 */
export function afterEarlierAnswers (socket: Duplex, req: IncomingMessage, go: () => void): void {
  const ready = (): boolean => {
    const pending = pendingAnswer(socket)
    return pending === undefined || pending.req === req
  }
  if (ready()) return go()
  const check = (): void => {
    if (socket.destroyed || ready()) {
      socket.removeListener('close', check)
      if (!socket.destroyed) go()
      return
    }
    // Node's own 'finish' listener, added first, has by then given the socket to the next answer.
    pendingAnswer(socket)!.once('finish', check)
  }
  socket.once('close', check)
  check()
}
