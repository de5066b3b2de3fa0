/**
 * Waiting on a shared word from the host thread, which must never block in `Atomics.wait`.
 *
 * `Atomics.waitAsync` alone does not keep Node 20's event loop alive: a process with nothing
 * else to do exits under a pending wait. A ref'd timer covers every wait until its deadline, so
 * the wait ends either on the notify it is waiting for or at its deadline, never on an exit.
 */
export type WaitResult = 'ok' | 'not-equal' | 'timed-out';

/** Resolves once `words[index]` is notified while it holds `expected`, or after `ms` (finite). */
export async function waitWord(words: Int32Array, index: number, expected: number, ms: number): Promise<WaitResult> {
  const timeout = Math.max(0, ms);
  const w = Atomics.waitAsync(words, index, expected, timeout);
  if (!w.async) return w.value;
  const keepAlive = setTimeout(() => {}, timeout + 1);
  try {
    return await w.value;
  } finally {
    clearTimeout(keepAlive);
  }
}
