// Long work on the event loop in slices: a caller awaits the returned function between
// steps, and it yields (setImmediate) once a slice has run for the given milliseconds, so
// that other requests, pings and timers are served in between.
import { setImmediate as nextTurn } from 'node:timers/promises';

export function yieldEvery(sliceMs: number): () => Promise<void> {
  let sliceStart = performance.now();
  return async () => {
    if (performance.now() - sliceStart < sliceMs) return;
    await nextTurn();
    sliceStart = performance.now();
  };
}
