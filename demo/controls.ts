/**
 * The chat page's stop / start / drain buttons, behind every framework's
 * `GET /demo/nodes` and `POST /demo/nodes/:name/:action` routes: what each
 * node is doing, what the gateway thinks of it, and the three actions.
 * The actions run where the nodes are: in this process (`localActions`),
 * or, with `--redis`, in the primary process (demo/across-processes.ts).
 */
import type { DrainOptions, Gateway, Logger, ServerState } from '../src/index.js'
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

export const ACTIONS = ['stop', 'start', 'drain'] as const
export type Action = typeof ACTIONS[number]

/** A node's own state, as the place that runs the actions knows it. */
export interface NodeState {
  name: string
  url: string
  listening: boolean
  drained: boolean
}

/** Where the page's actions take effect. */
export interface NodeActions {
  /** Every node, in order. */
  states: () => NodeState[]
  /** Run `action` on the node named `name` (both known to exist). */
  run: (name: string, action: Action) => Promise<void>
}

/** The part of a pool a drain needs: one gateway's pool, or every worker's at once. */
export interface Drainable {
  drain: (url: string, options: DrainOptions) => Promise<unknown>
  undrain: (url: string) => unknown
}

/** Actions on `nodes`, which run in this process; drains go to `pool`; `logger` records what was done. */
export function localActions (nodes: ChatNodes, pool: Drainable, logger: Logger): NodeActions {
  const drained = new Set<string>()

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
          pool.undrain(node.url)
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
        pool.drain(node.url, { timeout: DRAIN_TIMEOUT_MS }).then(() => {
          if (drained.has(name)) logger.info(record, `demo: ${name} drained (no open tunnels left)`)
        }, (err: unknown) => logger.error({ ...record, err }, `demo: draining ${name} failed`))
        break
    }
  }

  return {
    states: () => nodes.nodes.map((n) => ({ name: n.name, url: n.url, listening: n.listening, drained: drained.has(n.name) })),
    run,
  }
}

/** The page's controls over `actions`, showing what `gateway` (whose pool `pool` holds the nodes) sees of each node. */
export function nodeControls (actions: NodeActions, gateway: Gateway, pool: string, logger: Logger): NodeControls {
  const view = (node: NodeState): NodeView => {
    const server = gateway.status().pools[pool]?.servers.find((s) => s.url === node.url)
    return {
      ...node,
      gateway: {
        state: server?.state ?? 'down',
        reason: server?.reason ?? null,
        activeTunnels: server?.activeTunnels ?? 0,
      },
    }
  }
  const find = (name: string): NodeState | undefined => actions.states().find((n) => n.name === name)

  return {
    list: () => actions.states().map(view),
    act: async (name, action) => {
      if (find(name) === undefined) return { status: 404, body: { error: `no node named ${JSON.stringify(name)}` } }
      if (!(ACTIONS as readonly string[]).includes(action)) {
        return { status: 404, body: { error: `no action ${JSON.stringify(action)}: use ${ACTIONS.join(', ')}` } }
      }
      try {
        await actions.run(name, action as Action)
        return { status: 200, body: view(find(name)!) }
      } catch (err) {
        logger.error({ name, err }, `demo: ${action} ${name} failed`)
        return { status: 500, body: { error: (err as Error).message } }
      }
    },
  }
}
