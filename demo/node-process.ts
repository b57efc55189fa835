/**
 * One chat node in a process of its own, for `npm start -- --redis`: the
 * same `ChatNode` as the one-process demo runs three of, joined to the
 * others by `@socket.io/redis-adapter`, so `io.emit()` here reaches the
 * clients of every node through Redis, and with session ids from
 * `engineIoId(name)`. demo/node-processes.ts forks it and
 * drives it over IPC; it is not meant to be run by hand.
 *
 * Env: SOCKGATE_DEMO_NODE (its name), SOCKGATE_DEMO_REDIS (redis://...).
 */
import { createAdapter } from '@socket.io/redis-adapter'
import { Redis } from 'ioredis'
import { engineIoId } from '../src/index.js'
import { ChatNode } from './nodes.js'

/** What the primary asks. */
export interface NodeRequest { id: number, action: 'start' | 'stop' | 'shutdown' }
/** What the node answers: its state after the action, or why it failed. */
export interface NodeReply { id: number, url: string, listening: boolean, error?: string }

const name = process.env.SOCKGATE_DEMO_NODE ?? 'node'
const pub = new Redis(process.env.SOCKGATE_DEMO_REDIS ?? '')
const sub = pub.duplicate()
// Session ids that carry the node's name: each gateway worker routes a session's requests by its id
// alone, whichever worker saw it open (a table learnt in one worker would be unknown to the other).
const node = new ChatNode(name, createAdapter(pub, sub), engineIoId(name))

const reply = (message: NodeReply): void => { process.send?.(message) }

process.on('message', (request: NodeRequest) => {
  node[request.action]().then(
    () => reply({ id: request.id, url: node.url, listening: node.listening }),
    (err: unknown) => reply({ id: request.id, url: node.url, listening: node.listening, error: (err as Error).message })
  ).then(async () => {
    if (request.action !== 'shutdown') return
    await Promise.all([pub.quit(), sub.quit()])
    process.disconnect()
  })
})
// Ctrl+C reaches every process of the terminal: the primary shuts the nodes down in order, not the signal.
process.on('SIGINT', () => {})
// The primary went away without a shutdown: nothing is left to serve.
process.on('disconnect', () => process.exit(0))
