import { describe, expect, test } from '@jest/globals';
import { stricterLimit } from '../../../src/agent/agent.js';

describe("a build's time limit", () => {
  test('is the stricter of the coordinator\'s and the agent\'s, zero meaning none', () => {
    expect(stricterLimit(0, 0)).toBe(0);
    expect(stricterLimit(30, 0)).toBe(30);
    expect(stricterLimit(0, 30)).toBe(30);
    expect(stricterLimit(30, 10)).toBe(10);
    expect(stricterLimit(10, 30)).toBe(10);
  });
});
