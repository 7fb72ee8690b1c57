// The compressions the cache keeps a NAR in, and making them as streams. LZ4 is what
// agents upload (Nix reads it, and kiln's local builder); Guix reads gzip, lzip and zstd
// but not LZ4, so a cache meant for Guix clients keeps zstd too. zstd goes through the
// `zstd` program (Node 20's zlib has no zstd, and no npm zstd binding is a dependency),
// gzip through Node's zlib; both stream, so a NAR is never held whole.
import { spawn } from 'node:child_process';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

export type CompressionName = 'lz4' | 'zstd' | 'gzip';

export interface Compression {
  name: CompressionName;
  /** For those the cache makes: the level (zstd 1–19, gzip 1–9). */
  level?: number;
}

/** The compression uploads arrive in: always kept, the others are made from it. */
export const UPLOADED: CompressionName = 'lz4';

const KINDS: Record<CompressionName, { extension: string; levels?: [min: number, max: number, usual: number] }> = {
  lz4: { extension: 'lz4' },
  // Level 3 compresses at about 150 MB/s on one core; 19 is a few times smaller per
  // step up, and slower by two orders of magnitude (see README).
  zstd: { extension: 'zst', levels: [1, 19, 3] },
  gzip: { extension: 'gz', levels: [1, 9, 6] },
};

/** The file name extension, as Nix names NAR files (`<hash>.nar.zst`). */
export function extensionOf(name: CompressionName): string {
  return KINDS[name].extension;
}

/**
 * Reads the configuration's list (`NAME` or `NAME:LEVEL`, as `guix publish -C` takes
 * them); throws naming the entry at fault.
 */
export function parseCompressions(list: unknown, where: string): Compression[] {
  if (!Array.isArray(list) || list.length === 0) throw new Error(`${where}: must be a list of compressions, e.g. ['lz4', 'zstd']`);
  const parsed = list.map((entry: unknown, i): Compression => {
    const at = `${where}[${i}]`;
    const m = typeof entry === 'string' ? /^([a-z0-9]+)(?::(\d+))?$/.exec(entry) : null;
    if (!m || !(m[1]! in KINDS)) {
      throw new Error(`${at}: ${JSON.stringify(entry)} is not a compression the cache can keep (${Object.keys(KINDS).join(', ')}, with an optional :LEVEL)`);
    }
    const name = m[1] as CompressionName;
    const levels = KINDS[name].levels;
    if (m[2] === undefined) return levels ? { name, level: levels[2] } : { name };
    const level = Number(m[2]);
    if (!levels) throw new Error(`${at}: ${name} takes no level (it is kept as uploaded)`);
    if (level < levels[0] || level > levels[1]) throw new Error(`${at}: ${name} levels go from ${levels[0]} to ${levels[1]}, not ${level}`);
    return { name, level };
  });
  const names = parsed.map((c) => c.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new Error(`${where}: ${twice} is listed twice`);
  if (!names.includes(UPLOADED)) {
    throw new Error(`${where}: must include ${UPLOADED}: agents upload NARs as ${UPLOADED}, Nix and kiln's local builder read it, and the other compressions are made from it`);
  }
  return parsed;
}

/**
 * What the cache keeps when the configuration does not say: LZ4 alone for a Nix store,
 * and zstd as well for any other store directory (Guix's /gnu/store), whose clients cannot
 * read LZ4.
 */
export function defaultCompressions(storeDir: string): Compression[] {
  return storeDir === '/nix/store' ? [{ name: 'lz4' }] : [{ name: 'lz4' }, { name: 'zstd', level: KINDS.zstd.levels![2] }];
}

/** Checks, once at start, that the programs the compressions need are there, so a missing one is said at once. */
export async function checkCompressionTools(compressions: Compression[]): Promise<void> {
  if (!compressions.some((c) => c.name === 'zstd')) return;
  const nothing = async function* (): AsyncGenerator<Buffer> {};
  for await (const _chunk of throughProgram(['zstd', '-q', '-c'], nothing(), AbortSignal.timeout(10_000))) {
    // The empty input's frame; that the program ran is the check.
  }
}

/** `nar` compressed as `compression` (not the uploaded one: that is stored as it came). */
export function compress(compression: Compression, nar: AsyncIterable<Uint8Array>, signal: AbortSignal): AsyncIterable<Buffer> {
  switch (compression.name) {
    case 'zstd':
      return throughProgram(['zstd', '-q', '-c', `-${compression.level ?? KINDS.zstd.levels![2]}`, '-T1'], nar, signal);
    case 'gzip': {
      const gzip = createGzip({ level: compression.level ?? KINDS.gzip.levels![2] });
      return through(gzip, gzip, nar, signal);
    }
    case 'lz4':
      throw new Error('LZ4 NARs are stored as agents upload them, not made by the cache');
  }
}

/** Feeds `input` into `writable` while yielding what `readable` (the other end of the same transform) gives. */
async function* through(writable: Writable, readable: AsyncIterable<Buffer>, input: AsyncIterable<Uint8Array>, signal: AbortSignal): AsyncGenerator<Buffer> {
  const fed = pipeline(Readable.from(input), writable, { signal });
  // Observed below, after the output ends; meanwhile it must not count as unhandled.
  fed.catch(() => undefined);
  for await (const chunk of readable) yield chunk;
  await fed;
}

/** `input` through a program's standard input, yielding its standard output; its failure (or a missing program) is an error that says so. */
async function* throughProgram(command: string[], input: AsyncIterable<Uint8Array>, signal: AbortSignal): AsyncGenerator<Buffer> {
  const [program, ...args] = command as [string, ...string[]];
  const child = spawn(program, args, { stdio: ['pipe', 'pipe', 'pipe'], env: process.env });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-4000)));
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new Error(`the ${program} program is not installed (Debian: apt-get install ${program}); the cache needs it for its ${program} NARs`) : err),
    );
    child.once('close', (code, killedBy) => {
      if (code === 0) resolve();
      else reject(new Error(`${program} ${killedBy ? `was killed by ${killedBy}` : `exited with ${code}`}${stderr.trim() ? `: ${stderr.trim()}` : ''}`));
    });
  });
  exited.catch(() => undefined);
  // A program that quits early closes its stdin: the exit status says why, not EPIPE.
  child.stdin.on('error', () => undefined);
  const stop = () => child.kill('SIGKILL');
  signal.addEventListener('abort', stop, { once: true });
  try {
    yield* through(child.stdin, child.stdout, input, signal);
    await exited;
  } catch (err) {
    // The program's own account comes first (a feeding error is usually its effect).
    await exited;
    throw err;
  } finally {
    signal.removeEventListener('abort', stop);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
