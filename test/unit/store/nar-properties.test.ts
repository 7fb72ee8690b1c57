import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NarError } from '../../../src/store/nar-format.js';
import { parseNar, type NarEvent } from '../../../src/store/nar-parser.js';
import { unpackNar } from '../../../src/store/nar-reader.js';
import { dumpPath } from '../../../src/store/nar-writer.js';
import { collect, cut, dir, encodeEvents, file, link, narOf, nixDump, sha256Hex, type Token } from './nar-fixtures.js';

type Tree =
  | { kind: 'file'; contents: Uint8Array; executable: boolean }
  | { kind: 'symlink'; target: string }
  | { kind: 'dir'; entries: Array<[string, Tree]> };

const validName = (n: string) =>
  n !== '.' && n !== '..' && !n.includes('/') && !n.includes('\0') && Buffer.byteLength(n) <= 255 && Buffer.from(n).toString() === n;

// Characters whose byte order and locale order disagree, plus any grapheme.
const nameArb = fc
  .oneof(
    fc.string({ unit: fc.constantFrom('a', 'b', 'B', 'Z', '_', '.', '-', ' ', 'Ä', 'ä', 'é', 'e\u0301', '日', '~', '\n'), minLength: 1, maxLength: 6 }),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }),
  )
  .filter(validName);

const targetArb = fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 30 }).filter((t) => !t.includes('\0'));

const { tree: treeArb } = fc.letrec<{ tree: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ kind: fc.constant('file' as const), contents: fc.uint8Array({ maxLength: 100 }), executable: fc.boolean() }),
    fc.record({ kind: fc.constant('symlink' as const), target: targetArb }),
    fc.record({ kind: fc.constant('dir' as const), entries: fc.uniqueArray(fc.tuple(nameArb, tie('tree')), { selector: ([n]) => n, maxLength: 5 }) }),
  ),
}));

function materialise(tree: Tree, path: string): void {
  if (tree.kind === 'file') writeFileSync(path, tree.contents, { mode: tree.executable ? 0o755 : 0o644 });
  else if (tree.kind === 'symlink') symlinkSync(tree.target, path);
  else {
    mkdirSync(path);
    for (const [name, child] of tree.entries) materialise(child, join(path, name));
  }
}

/** The canonical NAR of a tree, built independently of kiln's writer. */
function tokens(tree: Tree): Token[] {
  if (tree.kind === 'file') return file(Buffer.from(tree.contents), tree.executable);
  if (tree.kind === 'symlink') return link(tree.target);
  const sorted = [...tree.entries].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return dir(...sorted.map(([name, child]): [Token, Token[]] => [name, tokens(child)]));
}

async function parseAll(chunks: Buffer[]): Promise<NarEvent[]> {
  const out: NarEvent[] = [];
  for await (const e of parseNar(chunks)) out.push(e.type === 'contents' ? { ...e, chunk: Buffer.from(e.chunk) } : e);
  return out;
}

type Mutation = { op: 'set'; at: number; value: number } | { op: 'truncate'; at: number } | { op: 'insert'; at: number; bytes: Uint8Array } | { op: 'delete'; at: number; length: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 16 }) }),
);

function mutate(nar: Buffer, mutations: Mutation[]): Buffer {
  let out = Buffer.from(nar);
  for (const m of mutations) {
    const at = out.length === 0 ? 0 : m.at % out.length;
    if (m.op === 'set' && out.length > 0) out[at] = m.value;
    else if (m.op === 'truncate') out = out.subarray(0, at);
    else if (m.op === 'insert') out = Buffer.concat([out.subarray(0, at), m.bytes, out.subarray(at)]);
    else if (m.op === 'delete') out = Buffer.concat([out.subarray(0, at), out.subarray(at + m.length)]);
  }
  return out;
}

let tmp: string;
let runs = 0;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'kiln-nar-props-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('NAR properties', () => {
  test('random trees: kiln writes what nix-store --dump writes, and unpacking then dumping gives it back', async () => {
    await fc.assert(
      fc.asyncProperty(treeArb, async (tree) => {
        const base = join(tmp, `tree-${++runs}`);
        mkdirSync(base);
        materialise(tree, join(base, 'in'));
        const ours = await collect(dumpPath(join(base, 'in')));
        expect(ours.equals(nixDump(join(base, 'in')))).toBe(true);
        expect(ours.equals(narOf(tokens(tree)))).toBe(true);
        const result = await unpackNar([ours], join(base, 'out'));
        expect(result.sha256.toString('hex')).toBe(sha256Hex(ours));
        expect((await collect(dumpPath(join(base, 'out')))).equals(ours)).toBe(true);
        rmSync(base, { recursive: true });
      }),
      { numRuns: 40 },
    );
  });

  test('random trees parse to the same events wherever the stream is cut, and re-encode to the same bytes', async () => {
    await fc.assert(
      fc.asyncProperty(treeArb, fc.array(fc.nat(), { maxLength: 40 }), async (tree, cuts) => {
        const nar = narOf(tokens(tree));
        const events = await parseAll(cut(nar, cuts));
        expect(encodeEvents(events).equals(nar)).toBe(true);
        expect(events).toEqual(await parseAll([nar]));
      }),
      { numRuns: 300 },
    );
  });

  test('random bytes never make the parser fail with anything but a NarError', async () => {
    const magic = narOf([]);
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 5 }), async (withMagic, body, cuts) => {
        const data = withMagic ? Buffer.concat([magic, body]) : Buffer.from(body);
        await expect(parseAll(cut(data, cuts))).rejects.toBeInstanceOf(NarError);
      }),
      { numRuns: 1000 },
    );
  });

  test('mutated NARs are refused with a NarError or, if accepted, are canonical', async () => {
    await fc.assert(
      fc.asyncProperty(treeArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }), fc.array(fc.nat(), { maxLength: 8 }), async (tree, mutations, cuts) => {
        const nar = mutate(narOf(tokens(tree)), mutations);
        const outcome = await parseAll(cut(nar, cuts)).then(
          (events) => ({ events }),
          (error: unknown) => ({ error }),
        );
        if ('error' in outcome) expect(outcome.error).toBeInstanceOf(NarError);
        else expect(encodeEvents(outcome.events).equals(nar)).toBe(true);
      }),
      { numRuns: 1500 },
    );
  });

  test('unpacking a mutated NAR leaves a complete tree or nothing, and never writes outside its target', async () => {
    await fc.assert(
      fc.asyncProperty(treeArb, fc.array(mutationArb, { minLength: 1, maxLength: 2 }), async (tree, mutations) => {
        const sandbox = join(tmp, `unpack-${++runs}`);
        mkdirSync(sandbox);
        const nar = mutate(narOf(tokens(tree)), mutations);
        const ok = await unpackNar([nar], join(sandbox, 'out')).then(
          () => true,
          (error: unknown) => {
            expect(error).toBeInstanceOf(NarError);
            return false;
          },
        );
        expect(readdirSync(sandbox)).toEqual(ok ? ['out'] : []);
        if (ok) expect((await collect(dumpPath(join(sandbox, 'out')))).equals(nar)).toBe(true);
        rmSync(sandbox, { recursive: true, force: true });
      }),
      { numRuns: 200 },
    );
  });
});
