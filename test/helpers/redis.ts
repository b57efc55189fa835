import { REDIS_INSTALL_HINT, redisServerFound } from '../../demo/redis.js'

// The starter lives with the demo, whose --redis mode runs one too; tests use it from here.
export { startRedis, type RedisServer } from '../../demo/redis.js'

/**
 * `skip` value for tests that need a real Redis: false when `redis-server`
 * is on the machine, or on CI (where `.ci/run` installs it, so a missing one
 * fails the run instead of hiding it); otherwise the install hint.
 */
export const redisSkip: false | string = redisServerFound || process.env.CI === 'true'
  ? false
  : `redis-server not found: ${REDIS_INSTALL_HINT} to run the Redis tests`
