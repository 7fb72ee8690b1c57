// Which outputs an agent sends inside its BuildFinished: a NAR of at most INLINE_NAR_MAX
// bytes goes as one LZ4 frame, byte for byte `nix-store --dump`'s; a larger one is left
// to UploadOutput.
import { afterEach, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decompressFrame } from 'lz4-napi';
import { inlineOutput } from '../../../src/agent/uploader.js';
import { encodeBase32 } from '../../../src/store/base32.js';
import { INLINE_NAR_MAX } from '../../../src/upload-limits.js';

describe('inlineOutput', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  /** An output that is one regular file of `size` bytes. */
  function fileOutput(size: number) {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-inline-'));
    dirs.push(dir);
    const diskPath = join(dir, 'out');
    writeFileSync(diskPath, Buffer.alloc(size, 'k'));
    const storePath = `/gnu/store/${'a'.repeat(32)}-out`;
    return { output: { name: 'out', storePath, diskPath, references: [`/gnu/store/${'b'.repeat(32)}-dep`] }, diskPath };
  }

  /** A file's NAR is its contents and 112 bytes of framing (for sizes a multiple of 8). */
  const NAR_FRAMING = 112;

  test('a NAR of exactly the limit goes inline, as nix-store --dump makes it, with its hash, size and references', async () => {
    const { output, diskPath } = fileOutput(INLINE_NAR_MAX - NAR_FRAMING);
    const info = await inlineOutput(output, new AbortController().signal);
    expect(info).toBeDefined();
    const nar = execFileSync('nix-store', ['--dump', diskPath], { maxBuffer: 1 << 20 });
    expect(nar.length).toBe(INLINE_NAR_MAX);
    expect((await decompressFrame(Buffer.from(info!.narLz4!))).equals(nar)).toBe(true);
    expect(info!.narHash).toBe(`sha256:${encodeBase32(createHash('sha256').update(nar).digest())}`);
    expect(info!.narSize).toBe(BigInt(nar.length));
    expect(info!.path).toBe(output.storePath);
    expect(info!.references).toEqual(output.references);
  });

  test('a NAR one chunk larger is left to UploadOutput', async () => {
    const { output } = fileOutput(INLINE_NAR_MAX - NAR_FRAMING + 8);
    expect(await inlineOutput(output, new AbortController().signal)).toBeUndefined();
  });
});
