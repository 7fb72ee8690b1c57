// Benchmark trees are expensive to make, so each is built once under the data dir and
// reused (a marker file written last says a tree is complete); their shape comes from a
// seeded generator so that it is the same on every machine.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TreeInfo {
  bytes: number;
  files: number;
}

/** The tree `version` under `dataDir`, built by `build` unless a complete one is there. */
export function ensureTree(
  dataDir: string,
  version: string,
  build: (root: string) => TreeInfo,
  log: (line: string) => void,
): { tree: string; info: TreeInfo } {
  const tree = join(dataDir, version);
  const marker = `${tree}.done`;
  if (existsSync(marker)) return { tree, info: JSON.parse(readFileSync(marker, 'utf8')) as TreeInfo };
  log(`building the benchmark tree ${version} in ${tree} (once)…`);
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(tree, { recursive: true });
  const info = build(tree);
  writeFileSync(marker, JSON.stringify(info));
  return { tree, info };
}

/** A small seeded PRNG (Mulberry32), so a tree's shape is the same on every run. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
