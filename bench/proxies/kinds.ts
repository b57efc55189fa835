/** Proxy kinds that run as Node children of bench/proxies/child.ts (nginx is launched by nginx.ts). */
export const NODE_PROXY_KINDS = ['sockgate', 'sockgate-express', 'sockgate-koa', 'sockgate-fastify', 'hpm', 'http-proxy'] as const

export type NodeProxyKind = typeof NODE_PROXY_KINDS[number]

export function isNodeProxyKind (name: string): name is NodeProxyKind {
  return (NODE_PROXY_KINDS as readonly string[]).includes(name)
}
