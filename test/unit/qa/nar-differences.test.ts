// The files that differ between NARs of one output, from their listings: real NARs of
// real directories (dumpPath, as agents upload them).
import { describe, expect, test } from '@jest/globals';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { differences, listNar, SMALL_FILE } from '../../../src/qa/nar-differences.js';
import { dumpPath } from '../../../src/store/nar-writer.js';

function tree(files: Record<string, string | Buffer | { link: string } | { exec: string }>): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'kiln-nardiff-')), 'out');
  mkdirSync(dir);
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name);
    mkdirSync(join(path, '..'), { recursive: true });
    if (typeof content === 'object' && 'link' in content) symlinkSync(content.link, path);
    else if (typeof content === 'object' && 'exec' in content) {
      writeFileSync(path, content.exec);
      chmodSync(path, 0o755);
    } else writeFileSync(path, content);
  }
  return dir;
}

async function listed(files: Parameters<typeof tree>[0]) {
  const dir = tree(files);
  try {
    return await listNar(dumpPath(dir));
  } finally {
    rmSync(join(dir, '..'), { recursive: true, force: true });
  }
}

describe('NAR differences', () => {
  test('lists every entry with its type, size and SHA-256', async () => {
    const entries = await listed({ 'bin/run': { exec: '#!/bin/sh\n' }, 'share/doc': 'hello\n', link: { link: 'share/doc' } });
    expect([...entries.keys()].sort()).toEqual(['', 'bin', 'bin/run', 'link', 'share', 'share/doc']);
    expect(entries.get('bin/run')).toMatchObject({ type: 'executable', size: 10 });
    expect(entries.get('share/doc')).toMatchObject({ type: 'regular', size: 6, sha256: '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03' });
    expect(entries.get('link')).toMatchObject({ type: 'symlink', sha256: 'share/doc' });
  });

  test('names only the file that differs, with where its text first differs', async () => {
    const one = await listed({ stable: 'same\n', noise: 'seed 12345\n' });
    const two = await listed({ stable: 'same\n', noise: 'seed 12399\n' });
    const found = differences([{ position: 1, entries: one }, { position: 2, entries: two }]);
    expect(found.map((d) => d.path)).toEqual(['noise']);
    expect(found[0]!.versions.map((v) => [v.position, v.firstDifference, v.excerpt])).toEqual([
      [1, 8, '45\n'],
      [2, 8, '99\n'],
    ]);
  });

  test('a file only one listing has is missing from the other; a binary or large file shows no excerpt', async () => {
    const big = 'x'.repeat(SMALL_FILE + 1);
    const one = await listed({ extra: 'only here\n', bin: Buffer.from([0, 1, 2]), big: `${big}a` });
    const two = await listed({ bin: Buffer.from([0, 1, 3]), big: `${big}b` });
    const found = differences([{ position: 1, entries: one }, { position: 2, entries: two }]);
    expect(found.map((d) => d.path)).toEqual(['big', 'bin', 'extra']);
    expect(found[2]!.versions.map((v) => v.type)).toEqual(['regular', 'missing']);
    for (const d of found) for (const v of d.versions) expect(v.excerpt).toBeUndefined();
  });

  test('identical NARs have no differences', async () => {
    const files = { a: 'a\n', 'd/b': 'b\n' };
    expect(differences([{ position: 1, entries: await listed(files) }, { position: 2, entries: await listed(files) }])).toEqual([]);
  });
});
