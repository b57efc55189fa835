/**
 * Engine.io session ids that name their server: the writer
 * ({@link engineIoId}, run by each upstream) and the reader
 * ({@link serverNameOfSid}, run by every gateway) of one format, kept in one
 * module so they cannot drift apart.
 *
 * A named sid is `<name>.<random>`: the server's name, a dot, then 22
 * base64url characters (16 bytes, 128 bits, from node:crypto; engine.io's own
 * base64id carries at most 96 random bits). Every character is unreserved in
 * a URL (RFC 3986 §2.3), so `?sid=` carries it without escaping. The random
 * part has no dot, so the last dot ends the name even when the name has dots.
 */
import { randomBytes } from 'node:crypto'
import { InvalidOptionError } from './errors.js'

/** Random bytes in a named sid: 128 bits, more than engine.io's own ids. */
const RANDOM_BYTES = 16
/** base64url characters those bytes take (no padding). */
const RANDOM_CHARS = Math.ceil(RANDOM_BYTES * 4 / 3)
/** What a server name may be: what logs and metrics labels carry, and a sid too. */
const SERVER_NAME = /^[A-Za-z0-9._-]{1,64}$/
/** A named sid: a server name, a dot, the random part (which has no dot, so the last dot ends the name). */
const NAMED_SID = new RegExp(`^(${SERVER_NAME.source.slice(1, -1)})\\.[A-Za-z0-9_-]{${RANDOM_CHARS}}$`)

/** True when `name` is a valid server name (`servers[].name`, and what {@link engineIoId} carries). */
export function isServerName (name: unknown): name is string {
  return typeof name === 'string' && SERVER_NAME.test(name)
}

/**
 * A session id generator for an upstream's engine.io server whose ids carry
 * `name`, so that every gateway routes the session's requests to the server
 * of the pool with that `name`, with no table:
 *
 * ```ts
 * io.engine.generateId = engineIoId('node-1') // and { url, name: 'node-1' } in the gateway's pool
 * ```
 *
 * Throws `SOCKGATE_ERR_INVALID_OPTION` when `name` is not 1 to 64 letters,
 * digits, `.`, `_` or `-` (the rule for `servers[].name`).
 */
export function engineIoId (name: string): () => string {
  if (!isServerName(name)) {
    throw new InvalidOptionError('engineIoId(name)', 'must be 1 to 64 letters, digits, ".", "_" or "-", the same name as the server\'s in the gateway\'s pool')
  }
  const prefix = name + '.'
  return () => prefix + randomBytes(RANDOM_BYTES).toString('base64url')
}

/**
 * The server name a session id made by {@link engineIoId} carries, or
 * undefined for any other id (engine.io's own ids have no dot and are 20
 * characters long).
 */
export function serverNameOfSid (sid: string): string | undefined {
  // Most ids are not named: a glance at the one position the dot must hold turns them away.
  if (sid.charCodeAt(sid.length - RANDOM_CHARS - 1) !== 46 /* . */) return undefined
  return NAMED_SID.exec(sid)?.[1]
}
