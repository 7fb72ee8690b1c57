// Shared by the NAR tests: fixture trees built on disk, NARs built by hand (for malformed
// archives), the real Nix's view of a path, and a re-encoder of parser events.
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createCipheriv, createHash } from 'node:crypto';
import { nix } from '../../helpers/nix.js';
import type { NarEvent } from '../../../src/store/nar-parser.js';

/** Deterministic bytes of any length (AES-CTR keyed by the seed): no file repeats another. */
export function bytes(length: number, seed = 'kiln'): Buffer {
  const key = createHash('sha256').update(seed).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

/**
 * Builds, under `dir` (which must not exist), a tree with every kind of node and the edge
 * cases of the format: empty and executable files, sizes on and off the 8-byte boundary,
 * symlinks (dangling, absolute, to a directory), nesting, an empty directory, unicode and
 * non-UTF-8 names, names whose byte order differs from locale order, and a file larger than
 * one 1 MiB chunk.
 */
export function buildFixtureTree(dir: string): void {
  mkdirSync(dir);
  const at = (rel: string) => `${dir}/${rel}`;
  writeFileSync(at('empty'), '');
  writeFileSync(at('hello.sh'), '#!/bin/sh\necho hello\n', { mode: 0o755 });
  writeFileSync(at('read-only'), 'no write bit\n', { mode: 0o444 });
  // Execute for group and others but not the owner: Nix (and so kiln) looks at the owner bit only.
  writeFileSync(at('group-exec'), 'x for group\n', { mode: 0o654 });
  writeFileSync(at('eight-times-4'), bytes(32));
  writeFileSync(at('eight-times-4-plus-1'), bytes(33));
  writeFileSync(at('big'), bytes((3 << 20) + 5));
  symlinkSync('hello.sh', at('link'));
  symlinkSync('/nix/store/00000000000000000000000000000000-absent', at('dangling-absolute'));
  symlinkSync('nested', at('dir-link'));
  mkdirSync(at('nested/a/b/c'), { recursive: true });
  writeFileSync(at('nested/a/b/c/deep.txt'), 'deep\n');
  writeFileSync(at('nested/a/sibling'), 'sibling\n');
  mkdirSync(at('empty-dir'));
  mkdirSync(at('order'));
  for (const name of ['B', 'a', '_', 'Ä', 'a.b', 'a-b', 'ä', 'Z', '日本語', 'e\u0301']) writeFileSync(at(`order/${name}`), name);
  writeFileSync(at('ünïcødé ✓ name.txt'), 'unicode\n');
  // A name that is not UTF-8: only a Buffer path can create it.
  writeFileSync(Buffer.concat([Buffer.from(`${dir}/latin1-`), Buffer.from([0xe9, 0xff])]), 'bytes\n');
  chmodSync(at('nested/a/b'), 0o755);
}

/** `nix-store --dump` of a path. */
export function nixDump(path: string): Buffer {
  return nix('nix-store', ['--dump', path]);
}

/** `nix-hash --type sha256` of a path: the NAR hash, in hex. */
export function nixHashHex(path: string): string {
  return nix('nix-hash', ['--type', 'sha256', path]).toString().trim();
}

export async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c);
  return Buffer.concat(parts);
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

// --- NARs by hand -------------------------------------------------------------------------

export type Token = string | Buffer;

/** Frames each token as the format does: 64-bit LE length, bytes, zero padding to 8. */
export function frame(...tokens: Token[]): Buffer {
  return Buffer.concat(
    tokens.map((t) => {
      const b = typeof t === 'string' ? Buffer.from(t) : t;
      const out = Buffer.alloc(8 + b.length + ((8 - (b.length % 8)) % 8));
      out.writeBigUInt64LE(BigInt(b.length), 0);
      b.copy(out, 8);
      return out;
    }),
  );
}

export const file = (contents: Token, executable = false): Token[] => ['(', 'type', 'regular', ...(executable ? ['executable', ''] : []), 'contents', contents, ')'];
export const link = (target: Token): Token[] => ['(', 'type', 'symlink', 'target', target, ')'];
export const dir = (...entries: Array<[Token, Token[]]>): Token[] => [
  '(',
  'type',
  'directory',
  ...entries.flatMap(([name, node]) => ['entry', '(', 'name', name, 'node', ...node, ')']),
  ')',
];
export const narOf = (node: Token[]): Buffer => frame('nix-archive-1', ...node);

/** Splits bytes into chunks at the given cut points (sorted, deduplicated, clamped). */
export function cut(data: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => Math.max(0, Math.min(data.length, p))))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of [...at, data.length]) {
    out.push(data.subarray(from, p));
    from = p;
  }
  return out;
}

/**
 * Writes a NAR back from parser events. Since the parser accepts only canonical NARs, this
 * must give back exactly the bytes it parsed.
 */
export function encodeEvents(events: NarEvent[]): Buffer {
  const out: Buffer[] = [frame('nix-archive-1')];
  const entryStart = (e: NarEvent) => {
    if (e.pathBytes.length > 0) out.push(frame('entry', '(', 'name', e.pathBytes.subarray(e.pathBytes.lastIndexOf(0x2f) + 1), 'node'));
  };
  // A node's ")" and, below the root, its entry's ")".
  const end = (e: NarEvent) => out.push(frame(')', ...(e.pathBytes.length > 0 ? [')'] : [])));
  let size = 0;
  let left = 0;
  for (const e of events) {
    if (e.type === 'directory') {
      entryStart(e);
      out.push(frame('(', 'type', 'directory'));
    } else if (e.type === 'directory-end') {
      end(e);
    } else if (e.type === 'symlink') {
      entryStart(e);
      out.push(frame('(', 'type', 'symlink', 'target', e.targetBytes));
      end(e);
    } else {
      if (e.type === 'regular') {
        entryStart(e);
        out.push(frame('(', 'type', 'regular', ...(e.executable ? ['executable', ''] : []), 'contents'));
        const length = Buffer.alloc(8);
        length.writeBigUInt64LE(BigInt(e.size));
        out.push(length);
        size = left = e.size;
      } else {
        out.push(Buffer.from(e.chunk));
        left -= e.chunk.length;
      }
      if (left === 0) {
        out.push(Buffer.alloc((8 - (size % 8)) % 8));
        end(e);
      }
    }
  }
  return Buffer.concat(out);
}
