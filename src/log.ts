/**
 * The gateway's records for the `logger` option (any pino-compatible
 * object): one per finished tunnel, one per upstream going down or up, added
 * or removed by discovery, one per `proxy:error` and `discover:error`. The fields are the events' own, so what a user greps
 * for in the log is what a `gateway.on()` listener sees.
 */
import type { SockgateError } from './errors.js'
import type { DiscoverErrorEvent, Logger, ProxyErrorEvent, TunnelCloseEvent, TunnelOpenEvent } from './types.js'

/** Payload of `upstream:down`, `upstream:up`, `upstream:added` and `upstream:removed`. */
export interface UpstreamStateEvent {
  pool: string
  server: string
  name: string | null
  reason: string
}

/**
 * How loud an error is: a client that left is routine (debug), a session an
 * upstream no longer holds is worth a look (warn), the gateway's or an
 * upstream's failure is an error, the client's own mistakes are info.
 */
function levelOf (error: SockgateError): 'debug' | 'info' | 'warn' | 'error' {
  if (error.code === 'SOCKGATE_ERR_CLIENT_ABORTED') return 'debug'
  if (error.code === 'SOCKGATE_ERR_STICKY_MISS') return 'warn'
  return error.statusCode >= 500 ? 'error' : 'info'
}

/** Writes the gateway's records to one logger. */
export class GatewayLog {
  readonly #logger: Logger

  constructor (logger: Logger) {
    this.#logger = logger
  }

  proxyError (event: ProxyErrorEvent): void {
    const { error, ...fields } = event
    const cause = error.cause as { code?: unknown, message?: unknown } | undefined
    const record: Record<string, unknown> = { code: error.code, status: error.statusCode, ...fields }
    if (cause !== undefined) record.cause = typeof cause.code === 'string' ? cause.code : String(cause.message ?? cause)
    this.#logger[levelOf(error)](record, error.message)
  }

  tunnelOpened (event: TunnelOpenEvent): void {
    this.#logger.debug({ ...event }, 'tunnel open')
  }

  tunnelClosed (event: TunnelCloseEvent): void {
    const { error, ...fields } = event
    const record: Record<string, unknown> = fields
    if (error !== undefined) record.cause = (error as { code?: string }).code ?? error.message
    this.#logger.info(record, 'tunnel closed')
  }

  upstream (up: boolean, event: UpstreamStateEvent): void {
    if (up) this.#logger.info({ ...event }, 'upstream up')
    else this.#logger.warn({ ...event }, 'upstream down')
  }

  /** Discovery changed the pool: routine, so info both ways. */
  membership (added: boolean, event: UpstreamStateEvent): void {
    this.#logger.info({ ...event }, added ? 'upstream added' : 'upstream removed')
  }

  /** Traffic still flows on the servers kept, but the pool no longer follows DNS: worth a look. */
  discoveryFailed (event: DiscoverErrorEvent): void {
    const { error, ...fields } = event
    const cause = error.cause as { code?: unknown } | undefined
    this.#logger.warn({ code: error.code, ...fields, ...(typeof cause?.code === 'string' ? { cause: cause.code } : {}) }, error.message)
  }

  discoveryRecovered (pool: string, dns: string): void {
    this.#logger.info({ pool, dns }, 'discovery answers again')
  }
}
