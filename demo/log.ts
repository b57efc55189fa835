/**
 * The demo's logger: plain pino, handed to the gateway as its `logger`.
 * With `json` the terminal gets pino's own JSON lines (pipe them to jq or
 * pino-pretty); with `text` each record is turned into one short line with
 * the same fields, easier to read while clicking around.
 */
import { pino, type DestinationStream, type Logger } from 'pino'

export const LOG_FORMATS = ['text', 'json'] as const
export type LogFormat = typeof LOG_FORMATS[number]

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' }
/** Fields every pino record has; the text line shows them its own way or not at all. */
const OMITTED = new Set(['level', 'time', 'msg', 'pid', 'hostname'])

/** A pino logger writing to `out` in `format`. */
export function createLogger (format: LogFormat, out: NodeJS.WritableStream = process.stdout): Logger {
  return pino({}, format === 'json' ? out : textLines(out))
}

/** A pino destination that rewrites each JSON record as `12:00:01.234 info  tunnel closed  pool=... name=...`. */
function textLines (out: NodeJS.WritableStream): DestinationStream {
  return {
    write (line: string) {
      const record = JSON.parse(line) as Record<string, unknown>
      const at = new Date(record.time as number)
      const time = `${at.toTimeString().slice(0, 8)}.${String(at.getMilliseconds()).padStart(3, '0')}`
      const level = (LEVELS[record.level as number] ?? String(record.level)).padEnd(5)
      let fields = ''
      for (const [key, value] of Object.entries(record)) {
        if (!OMITTED.has(key)) fields += ` ${key}=${formatValue(value)}`
      }
      out.write(`${time} ${level} ${String(record.msg ?? '')}${fields === '' ? '' : ' '}${fields}\n`)
    },
  }
}

function formatValue (value: unknown): string {
  // pino serializes an `err` as { type, message, stack }: its message is enough on one line.
  const message = (value as { message?: unknown } | null)?.message
  if (typeof value === 'object' && typeof message === 'string') value = message
  if (typeof value !== 'string') return JSON.stringify(value)
  // Quote only what would not read as one token.
  return /[\s"=]/.test(value) ? JSON.stringify(value) : value
}
