// ARCHITECTURE.md names the files each data flow passes through; a rename that forgets
// the map fails here.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from '@jest/globals';

const root = join(import.meta.dirname, '..', '..');

describe('ARCHITECTURE.md', () => {
  test('every file it names by its path exists', () => {
    const text = readFileSync(join(root, 'ARCHITECTURE.md'), 'utf8');
    const named = [...text.matchAll(/`((?:src|scripts)\/[^`\s]+\.(?:ts|mjs))`/g)].map((m) => m[1]!);
    expect(named.length).toBeGreaterThan(20);
    expect(named.filter((path) => !existsSync(join(root, path)))).toEqual([]);
  });
});
