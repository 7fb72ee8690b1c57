import { expect, test } from '@jest/globals';
import { isLastingFailure, retryingTransient } from '../../../src/db/transient.js';

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

test('a refused value or statement, or a bug, is lasting; an outage, a deadlock or I/O is not', () => {
  expect(isLastingFailure(failing('22021'))).toBe(true); // invalid byte sequence for encoding UTF8: 0x00
  expect(isLastingFailure(failing('23505'))).toBe(true);
  expect(isLastingFailure(new TypeError('x is undefined'))).toBe(true);
  for (const code of ['57P01', '08006', '40P01', '53100']) expect(isLastingFailure(failing(code))).toBe(false);
  expect(isLastingFailure(Object.assign(new Error('no space'), { code: 'ENOSPC' }))).toBe(false);
  expect(isLastingFailure(Object.assign(new Error('gone'), { code: 'CONNECTION_CLOSED' }))).toBe(false);
});
