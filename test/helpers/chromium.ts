import { existsSync } from 'node:fs'
import { after, before } from 'node:test'
import { chromium, type Browser } from 'playwright-core'

/** Debian's Chromium, which `.ci/run` installs. */
export const CHROMIUM = '/usr/bin/chromium'
/** A headless Chromium that makes no connection of its own (this machine's network is closed to it). */
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync']

/** `skip` for browser tests: skipped with the install hint on a developer machine without Chromium, never on CI. */
export const browserSkip: false | string = existsSync(CHROMIUM) || process.env.CI === 'true'
  ? false
  : `Chromium not found at ${CHROMIUM}: install it with \`apt-get install chromium\` to run the browser tests`

/**
 * One browser for the tests of the enclosing `describe`: launched before
 * them, closed after. Read `.browser` inside a test.
 */
export function useBrowser (extraArgs: readonly string[] = []): { readonly browser: Browser } {
  let browser: Browser | undefined
  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...extraArgs] })
  })
  after(() => browser?.close())
  return {
    get browser (): Browser {
      if (browser === undefined) throw new Error('the browser is not launched yet: read .browser inside a test')
      return browser
    },
  }
}
