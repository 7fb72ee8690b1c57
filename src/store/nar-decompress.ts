// Decompressing NARs as binary caches serve them: LZ4 frames (kiln's), uncompressed, or xz, zstd,
// bzip2 and gzip (Nix's default for a file:// cache is xz); the last ones go through
// the machine's programs, streamed both ways.
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { decompressLz4Frames } from './lz4-frames.js';

const PROGRAMS: Record<string, string[]> = { xz: ['xz', '-dc'], zstd: ['zstd', '-dcq'], bzip2: ['bzip2', '-dc'] };

/** The compressions this reads (a narinfo without Compression means bzip2). */
export function canDecompress(compression: string | undefined): boolean {
  const name = compression ?? 'bzip2';
  return name === 'lz4' || name === 'none' || name === 'gzip' || name in PROGRAMS;
}

export async function* decompressNar(compression: string | undefined, body: Readable, signal: AbortSignal): AsyncGenerator<Buffer> {
  const name = compression ?? 'bzip2';
  if (name === 'none') return yield* body as AsyncIterable<Buffer>;
  if (name === 'lz4') return yield* decompressLz4Frames(body as AsyncIterable<Buffer>);
  if (name === 'gzip') return yield* body.pipe(createGunzip()) as AsyncIterable<Buffer>;
  const [program, ...args] = PROGRAMS[name]!;
  const child = spawn(program!, args, { stdio: ['pipe', 'pipe', 'pipe'], signal });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
  body.pipe(child.stdin);
  body.once('error', (err) => child.stdin.destroy(err));
  child.stdin.on('error', () => undefined); // the program's own exit says what went wrong
  yield* child.stdout as AsyncIterable<Buffer>;
  const code = await exited;
  if (code !== 0) throw new Error(`${program} could not decompress the NAR (exit ${code}): ${stderr.trim().slice(-300)}`);
}
