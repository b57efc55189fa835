/**
 * Preloaded (`--import`) into a README example run by test/helpers/examples.ts.
 * The examples listen on the ports a reader would use (80, 8080); here those
 * listens go to an ephemeral port on 127.0.0.1 instead, so the example's code
 * runs unedited, and the bound address is sent to the parent over IPC.
 */
import net from 'node:net'

/** The ports the README's examples listen on. */
const README_PORTS = new Set([80, 8080])

// Only the parent's messages should keep this channel open, never the example's lifetime.
process.channel?.unref()

const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
  const [first] = args
  const options = typeof first === 'object' && first !== null ? first as net.ListenOptions : {}
  const port = typeof first === 'object' ? options.port : first
  if (!README_PORTS.has(Number(port))) return listen.apply(this, args as Parameters<typeof listen>)
  this.once('listening', () => { process.send?.({ listening: this.address() }) })
  const callback = args.find((arg) => typeof arg === 'function') as (() => void) | undefined
  return listen.call(this, { ...options, port: 0, host: '127.0.0.1' }, callback)
} as typeof listen
