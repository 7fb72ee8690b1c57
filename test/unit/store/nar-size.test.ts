// narSizeOf counts a NAR from lstat calls alone: it must match, byte for byte, the
// length of what `nix-store --dump` writes for the same tree.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { narSizeOf } from '../../../src/store/nar-size.js';
import { buildFixtureTree, nixDump } from './nar-fixtures.js';

describe('narSizeOf', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-nar-size-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('is the length of nix-store --dump for a tree of files, executables, symlinks and directories', async () => {
    const tree = join(dir, 'tree');
    buildFixtureTree(tree);
    expect(await narSizeOf(tree)).toBe(nixDump(tree).length);
  });

  test('is the length of nix-store --dump for a lone file and a lone symlink', async () => {
    const file = join(dir, 'file');
    writeFileSync(file, 'seven b');
    const link = join(dir, 'link');
    symlinkSync('a/target/of/some/length', link);
    expect(await narSizeOf(file)).toBe(nixDump(file).length);
    expect(await narSizeOf(link)).toBe(nixDump(link).length);
  });
});
