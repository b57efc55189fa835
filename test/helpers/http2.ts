import { readFileSync } from 'node:fs'
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2'
import type { TestContext } from 'node:test'
import * as wsModule from 'ws'

/** The test CA and the server key and certificate for localhost and 127.0.0.1 (test/fixtures/tls). */
const TLS = new URL('../fixtures/tls/', import.meta.url)
export const CA = readFileSync(new URL('ca.pem', TLS))
export const KEY_CERT = { key: readFileSync(new URL('key.pem', TLS)), cert: readFileSync(new URL('cert.pem', TLS)) }

/** ws's own frame writer and reader (exported by its ES module, though not in its type definitions). */
interface FrameSender { send (data: Buffer, options: Record<string, boolean>, cb: (err?: Error | null) => void): void }
const { Sender, Receiver } = wsModule as unknown as {
  Sender: new (socket: NodeJS.WritableStream) => FrameSender
  Receiver: new (options: Record<string, unknown>) => NodeJS.WritableStream & NodeJS.EventEmitter
}
/** An HTTP/2 client session, once the server's SETTINGS have arrived. */
export async function h2Session (t: TestContext, url: string): Promise<ClientHttp2Session> {
  const session = http2.connect(url, { ca: CA })
  t.after(() => { session.destroy() })
  session.on('error', () => {})
  await new Promise((resolve) => session.once('remoteSettings', resolve))
  return session
}

/** An RFC 8441 extended CONNECT on `session`, and the answer's head. */
export async function extendedConnect (session: ClientHttp2Session, path: string, extra: Record<string, string> = {}): Promise<{ stream: ClientHttp2Stream, headers: IncomingHttpHeaders }> {
  const stream = session.request({
    ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'https', ':path': path, ':authority': 'localhost', 'sec-websocket-version': '13', ...extra,
  })
  stream.on('error', () => {})
  const headers = await new Promise<IncomingHttpHeaders>((resolve, reject) => {
    stream.once('response', resolve)
    stream.once('close', () => reject(new Error(`stream closed without an answer (rst ${stream.rstCode})`)))
  })
  return { stream, headers }
}

/** The body of an answered stream, read to its end. */
export async function bodyOf (stream: ClientHttp2Stream): Promise<string> {
  let text = ''
  stream.setEncoding('utf8')
  for await (const chunk of stream) text += chunk as string
  return text
}

/** WebSocket frames over an open stream, built and read by ws itself (the client masks, as RFC 6455 asks). */
export function frames (stream: ClientHttp2Stream) {
  const sender = new Sender(stream)
  const receiver = new Receiver({ isServer: false, binaryType: 'nodebuffer' })
  const messages: string[] = []
  receiver.on('message', (data: Buffer) => messages.push(String(data)))
  stream.pipe(receiver)
  return {
    send: (text: string) => new Promise<void>((resolve, reject) => {
      sender.send(Buffer.from(text), { binary: false, fin: true, mask: true, compress: false, rsv1: false }, (err) => err == null ? resolve() : reject(err))
    }),
    messages,
  }
}
