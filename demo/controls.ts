/**
 * The chat page's stop / start / drain buttons, behind every framework's
 * `GET /demo/nodes` and `POST /demo/nodes/:name/:action` routes: what each
 * node is doing, what the gateway thinks of it, and the three actions.
 */
import type { Gateway, Logger, ServerState } from '../src/index.js'
import type { ChatNodes } from './nodes.js'

/** A node as the page's control panel shows it. */
export interface NodeView {
  name: string
  url: string
  /** The node itself: listening, or stopped from the page. */
  listening: boolean
  /** Drained from the page: the gateway gives it no new sessions until it is started again. */
  drained: boolean
  /** What the gateway thinks of it, as on the status page. */
  gateway: { state: ServerState, reason: string | null, activeTunnels: number }
}

/** What a control route answers: a status and a JSON body. */
export interface ControlAnswer {
  status: number
  body: NodeView | { error: string }
}

/** The node controls, shared by every framework's routes. */
export interface NodeControls {
  /** Every node, in order. */
  list: () => NodeView[]
  /** Run `action` on the node named `name`; never rejects (failures are answers). */
  act: (name: string, action: string) => Promise<ControlAnswer>
}

/** `/demo/nodes/<name>/<action>`, for the frameworks without route parameters. */
export const CONTROL_PATH = /^\/demo\/nodes\/([^/?]+)\/([^/?]+)$/

/**
 * How long a drained node's WebSocket tunnels may run before the gateway
 * ends them (and their clients reconnect elsewhere). Short, so a visitor
 * sees it happen; production drains give minutes.
 */
export const DRAIN_TIMEOUT_MS = 5_000

const ACTIONS = ['stop', 'start', 'drain'] as const
type Action = typeof ACTIONS[number]

/** Controls for `nodes`, which are the servers of the gateway's pool `pool`; `logger` records what was done. */
export function nodeControls (nodes: ChatNodes, gateway: Gateway, pool: string, logger: Logger): NodeControls {
  const drained = new Set<string>()

  const view = (name: string): NodeView => {
    const node = nodes.find(name)!
    const server = gateway.status().pools[pool]?.servers.find((s) => s.url === node.url)
    return {
      name,
      url: node.url,
      listening: node.listening,
      drained: drained.has(name),
      gateway: {
        state: server?.state ?? 'down',
        reason: server?.reason ?? null,
        activeTunnels: server?.activeTunnels ?? 0,
      },
    }
  }

  const run = async (name: string, action: Action): Promise<void> => {
    const node = nodes.find(name)!
    const record = { name, server: node.url }
    switch (action) {
      case 'stop':
        await node.stop()
        logger.info(record, `demo: ${name} stopped from the page (its port is closed, its connections cut)`)
        break
      case 'start':
        if (drained.delete(name)) {
          gateway.pool(pool).undrain(node.url)
          logger.info(record, `demo: ${name} undrained from the page (it takes new sessions again)`)
        }
        if (!node.listening) {
          await node.start()
          logger.info(record, `demo: ${name} started from the page (listening again on the same port)`)
        }
        break
      case 'drain':
        if (drained.has(name)) break
        drained.add(name)
        logger.info({ ...record, timeout: DRAIN_TIMEOUT_MS }, `demo: ${name} draining from the page (no new sessions; its tunnels end within ${DRAIN_TIMEOUT_MS} ms)`)
        // The answer does not wait for the drain: the page watches it happen.
        gateway.pool(pool).drain(node.url, { timeout: DRAIN_TIMEOUT_MS }).then(() => {
          if (drained.has(name)) logger.info(record, `demo: ${name} drained (no open tunnels left)`)
        }, (err: unknown) => logger.error({ ...record, err }, `demo: draining ${name} failed`))
        break
    }
  }

  return {
    list: () => nodes.nodes.map((n) => view(n.name)),
    act: async (name, action) => {
      if (nodes.find(name) === undefined) return { status: 404, body: { error: `no node named ${JSON.stringify(name)}` } }
      if (!(ACTIONS as readonly string[]).includes(action)) {
        return { status: 404, body: { error: `no action ${JSON.stringify(action)}: use ${ACTIONS.join(', ')}` } }
      }
      try {
        await run(name, action as Action)
        return { status: 200, body: view(name) }
      } catch (err) {
        logger.error({ name, err }, `demo: ${action} ${name} failed`)
        return { status: 500, body: { error: (err as Error).message } }
      }
    },
  }
}
