import { describe, expect, test } from '@jest/globals';
import { AsyncQueue } from '../../src/async-queue.js';

describe('AsyncQueue.drained', () => {
  test('resolves at once while no more than the bound wait, else once the consumer has taken enough', async () => {
    const queue = new AsyncQueue<number>();
    const consumer = queue[Symbol.asyncIterator]();
    let drained = false;
    await queue.drained(0);
    for (const n of [1, 2, 3]) queue.push(n);
    const waiting = queue.drained(1).then(() => (drained = true));
    expect((await consumer.next()).value).toBe(1);
    await Promise.resolve();
    expect(drained).toBe(false);
    expect((await consumer.next()).value).toBe(2);
    await waiting;
    expect(drained).toBe(true);
  });

  test('resolves when the queue ends, so that a producer is never left waiting on a consumer that stopped', async () => {
    const queue = new AsyncQueue<number>();
    for (const n of [1, 2, 3]) queue.push(n);
    const waiting = queue.drained(0);
    await queue[Symbol.asyncIterator]().return!();
    await expect(waiting).resolves.toBeUndefined();
  });
});
