import { expect, test } from '@jest/globals';
import { retryingTransient } from '../../../src/db/transient.js';

/** An error as drizzle raises it: the server's error, with its code, as the cause. */
function failing(code: string): Error {
  return new Error('Failed query', { cause: Object.assign(new Error('server says no'), { code }) });
}

test('a statement aborted by a deadlock or a serialization failure runs again', async () => {
  for (const code of ['40P01', '40001']) {
    let calls = 0;
    const result = await retryingTransient(async () => {
      if (++calls < 3) throw failing(code);
      return 'done';
    });
    expect([result, calls]).toEqual(['done', 3]);
  }
});

test('other errors, and a third transient failure, reach the caller', async () => {
  let calls = 0;
  await expect(retryingTransient(async () => { calls++; throw failing('23505'); })).rejects.toThrow('Failed query');
  expect(calls).toBe(1);
  calls = 0;
  await expect(retryingTransient(async () => { calls++; throw failing('40P01'); })).rejects.toThrow('Failed query');
  expect(calls).toBe(3);
});
