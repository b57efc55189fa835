/** Small timing helpers for the load loops. */

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `done` every 10 ms; resolves when it is true or after `ms`, whichever comes first. */
export async function waitUntil (done: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms
  while (!done() && Date.now() < until) await sleep(10)
}
