#!/usr/bin/env node
// The import rules of DESIGN.md's layout, read from the code: each file's imports are
// taken by TypeScript's own pre-processor (imports, re-exports, dynamic imports), resolved
// against the file's folder, and held to the rules below. Prints every import that breaks
// one and exits 1; run by `npm run lint`, so CI keeps the arrows pointing inward.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Each rule: files under `from` may not import anything under one of `banned` (folders relative to the root). */
const RULES = [
  { from: 'src/store', banned: ['src', 'gen'], except: ['src/store'], why: 'store/ holds the formats and imports nothing else of kiln' },
  { from: 'src/agent', banned: ['src/coordinator'], why: 'the agent reaches the coordinator only through the SDK (sdk/typescript) and protocol/' },
  { from: 'src/coordinator', banned: ['src/cli'], why: 'the server never imports its CLI' },
  { from: 'src/hooks', banned: ['src/cli'], why: 'hooks use the SDK (sdk/typescript), never the CLI' },
  { from: 'src/scheduler', banned: ['src/storage', 'src/substitutes', 'src/cache', 'gen'], why: 'scheduling knows no storage and no protobuf' },
  { from: 'test', banned: ['bench'], why: 'tests do not depend on benchmarks' },
];

function* sourceFiles(dir) {
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sourceFiles(path);
    else if (/\.(ts|mts|js|mjs)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) yield path;
  }
}

const under = (path, folder) => path === folder || path.startsWith(folder + '/') || path === folder.replace(/\.ts$/, '.js');
const posix = (path) => path.split(sep).join('/');

/** The repository-relative path an import names, or undefined for a package. */
function target(file, specifier) {
  if (!specifier.startsWith('.')) return undefined;
  return posix(relative(root, resolve(root, dirname(file), specifier))).replace(/\.js$/, '.ts');
}

const broken = [];
for (const rule of RULES) {
  for (const file of sourceFiles(rule.from)) {
    const { importedFiles } = ts.preProcessFile(readFileSync(join(root, file), 'utf8'), true, true);
    for (const { fileName } of importedFiles) {
      const to = target(file, fileName);
      if (!to) continue;
      if (rule.except?.some((folder) => under(to, folder))) continue;
      if (rule.banned.some((folder) => under(to, folder))) broken.push(`${posix(file)} imports ${to}: ${rule.why}`);
    }
  }
}

if (broken.length > 0) {
  console.error(`import rules broken (DESIGN.md, Layout):\n${broken.map((line) => `  ${line}`).join('\n')}`);
  process.exit(1);
}
console.log(`import rules hold (${RULES.length} rules)`);
