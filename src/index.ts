/**
 * sockgate: an nginx-grade WebSocket and Socket.IO reverse proxy inside a
 * Node app. This module is the public surface: everything not exported here
 * is private.
 */
export { createGateway, Gateway, type CloseOptions, type GatewayEvents } from './gateway.js'
export { registerUpgradeHandler, type UpgradeHandler } from './dispatch.js'
export { afterEarlierAnswers } from './pipelining.js'
export { attachPaths, matchedPrefix, mountUpgrades, normalizeMountPath, ServerMounts, stripMountPath } from './mount.js'
export * from './errors.js'
export { engineIoId } from './engine-io-id.js'
export type * from './types.js'
export type { Pool } from './upstream/pool.js'
export type { UpstreamServer } from './upstream/server.js'
export type { DrainOptions } from './upstream/pool.js'
export { PROMETHEUS_CONTENT_TYPE } from './status.js'
