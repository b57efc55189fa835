/**
 * The request body as it will go upstream: nothing, a buffer that failover
 * may send again, a stream sent once, or the body a parser already read,
 * encoded again. Pure apart from reading the request stream.
 */
import type { IncomingMessage } from 'node:http'
import { Transform, type TransformCallback } from 'node:stream'
import { BodyConsumedError, BodyTooLargeError } from './errors.js'
import { isPlainObject } from './headers.js'

/**
 * Bodies up to this size are read whole before the upstream is picked, so a
 * failed attempt can be replayed on the next server (nginx buffers request
 * bodies too: `proxy_request_buffering on`). Engine.io polling POSTs fit.
 */
export const REPLAYABLE_BODY = 65_536

/** A request body as it will be sent: nothing, a buffer (replayable), or a stream (sent once). */
export type RequestBody = null | Buffer | BodyLimit

/** Counts a streamed body and fails it once it runs past the limit. */
export class BodyLimit extends Transform {
  /** Bytes that went through so far. */
  seen = 0
  constructor (private readonly limit: number) {
    super()
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length
    if (this.seen > this.limit) cb(new BodyTooLargeError(this.limit))
    else cb(null, chunk)
  }
}

/**
 * Prepare the request body. Rejects with `BodyTooLargeError` when the
 * declared or buffered length is past `limit` (the upstream never sees it).
 * A streamed body goes through a counter that cuts it off at the limit; the
 * request stream itself is never handed to undici, which destroys what it
 * is given on failure.
 */
export async function readBody (req: IncomingMessage, limit: number): Promise<RequestBody> {
  const declared = req.headers['content-length']
  const chunked = req.headers['transfer-encoding'] !== undefined
  if (declared === undefined && !chunked) return null
  const length = declared === undefined ? -1 : Number(declared)
  if (length > limit) throw new BodyTooLargeError(limit)
  if (length === 0) return null
  if (length > 0 && length <= REPLAYABLE_BODY) {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    return Buffer.concat(chunks)
  }
  const counter = new BodyLimit(limit)
  req.pipe(counter)
  return counter
}

/** The request declares a body (a length above 0, or chunked framing). */
function declaresBody (req: IncomingMessage): boolean {
  const declared = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (declared !== undefined && declared !== '0')
}

/**
 * A body that middleware read before sockgate (express.json(),
 * koa-bodyparser: `req.readableDidRead` is set and the stream is spent),
 * encoded again from what the parser left in `req.body`: a Buffer or a
 * string as it is, JSON for JSON types, a form for urlencoded ones. Returns
 * null when the request had no body. Throws `BodyConsumedError` when the
 * parsed value cannot be turned back into bytes (multipart, a body read and
 * thrown away), and `BodyTooLargeError` past `limit`: never an empty body
 * sent in its place.
 */
export function reencodeBody (req: IncomingMessage & { body?: unknown }, limit: number): Buffer | null {
  if (!declaresBody(req)) return null
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  const parsed = req.body
  let bytes: Buffer | undefined
  if (Buffer.isBuffer(parsed)) bytes = parsed
  else if (typeof parsed === 'string') bytes = Buffer.from(parsed)
  else if (parsed !== undefined && (type === 'application/json' || type.endsWith('+json'))) bytes = Buffer.from(JSON.stringify(parsed))
  else if (isPlainObject(parsed) && type === 'application/x-www-form-urlencoded') bytes = encodeForm(parsed)
  if (bytes === undefined) throw new BodyConsumedError(type === '' ? 'no content type' : type)
  if (bytes.length > limit) throw new BodyTooLargeError(limit)
  return bytes
}

/**
 * A parsed form as `application/x-www-form-urlencoded` again. Repeated keys
 * come back as arrays (both Node's querystring and qs parse them so);
 * nested objects from qs's extended syntax as `a[b]=c`. Undefined for a
 * value no form can carry.
 */
function encodeForm (form: Record<string, unknown>): Buffer | undefined {
  const pairs = new URLSearchParams()
  const add = (key: string, value: unknown): boolean => {
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
      pairs.append(key, String(value))
      return true
    }
    if (Array.isArray(value)) return value.every((v) => add(key, v))
    if (isPlainObject(value)) return Object.entries(value).every(([k, v]) => add(`${key}[${k}]`, v))
    return false
  }
  return Object.entries(form).every(([k, v]) => add(k, v)) ? Buffer.from(pairs.toString()) : undefined
}

/** Request header list for a re-encoded body: its own Content-Length, and no Content-Encoding (the parser decoded it). */
export function withBodyLength (flat: readonly string[], length: number): string[] {
  const out: string[] = []
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const lower = (flat[i] as string).toLowerCase()
    if (lower === 'content-length' || lower === 'content-encoding' || lower === 'transfer-encoding') continue
    out.push(flat[i] as string, flat[i + 1] as string)
  }
  out.push('Content-Length', String(length))
  return out
}
