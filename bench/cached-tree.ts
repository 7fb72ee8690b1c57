// Benchmark trees are expensive to make, so each is built once under the data dir and
// reused; a marker file written last says a tree is complete.
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
