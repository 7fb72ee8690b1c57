// Benchmark: kiln's NAR serialisation + SHA-256 against `nix-store --dump <tree> | sha256sum`
// on the same 1 GiB tree (many small files, some of a few MiB, a few of 128 MiB), with the
// process's RSS sampled during kiln's run to show that memory stays flat whatever the file size.
//
//   npx tsc -p tsconfig.build.json && node dist/bench/nar.js [data-dir] [--rounds N]
import { ensureTree, mulberry32, type TreeInfo } from './cached-tree.js';
import { spawn } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, symlinkSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { dumpPath, hashPath } from '../src/store/nar-writer.js';

export interface BenchNarOptions {
  /** Where the tree is built once and kept (default `bench-data/`). */
  dataDir?: string;
  /** Timed runs of each side; the best of each is reported (default 3). */
  rounds?: number;
  log?: (line: string) => void;
}

export interface BenchNarReport {
  treeBytes: number;
  files: number;
  narBytes: number;
  /** dumpPath read to its end: the stream an agent uploads, a fresh buffer per chunk. */
  kiln: { seconds: number; mbPerSecond: number };
  /** hashPath: the same walk, refilling its chunks since it keeps none. */
  kilnHashPath: { seconds: number; mbPerSecond: number };
  nix: { seconds: number; mbPerSecond: number };
  /** kiln's throughput over `nix-store --dump | sha256sum`'s: above 1, kiln is faster. */
  ratio: number;
  /**
   * `nix-hash --type sha256 <tree>`, for reference: Nix's dump and OpenSSL's SHA-256 in one
   * process, where coreutils' sha256sum (no SHA-NI) limits the pipeline above.
   */
  nixHash: { seconds: number; mbPerSecond: number; ratio: number };
  rss: { baselineBytes: number; peakBytes: number; peakDeltaBytes: number };
}

const TREE_VERSION = 'nar-tree-v1';
const MiB = 1 << 20;

export async function benchNar(options: BenchNarOptions = {}): Promise<BenchNarReport> {
  const log = options.log ?? ((line: string) => console.log(line));
  const rounds = options.rounds ?? 3;
  const dataDir = resolve(options.dataDir ?? 'bench-data');
  const { tree, info } = ensureTree(dataDir, TREE_VERSION, buildTree, log);
  log(`tree: ${tree} — ${info.files} files, ${(info.bytes / MiB).toFixed(0)} MiB`);

  // One untimed pass so both sides read from the page cache.
  const warm = await hashPath(tree);
  const narBytes = warm.size;

  let bestKiln = Infinity;
  let bestHashPath = Infinity;
  let bestNix = Infinity;
  let bestNixHash = Infinity;
  let rss = { baselineBytes: 0, peakBytes: 0, peakDeltaBytes: 0 };
  for (let round = 1; round <= rounds; round++) {
    const nix = await timeNix(tree);
    if (nix.sha256 !== warm.sha256.toString('hex')) throw new Error(`nix-store --dump | sha256sum gave ${nix.sha256}, kiln ${warm.sha256.toString('hex')}`);
    bestNix = Math.min(bestNix, nix.seconds);
    const nixHash = await timeCommand('nix-hash', ['--type', 'sha256', tree]);
    if (nixHash.sha256 !== nix.sha256) throw new Error(`nix-hash gave ${nixHash.sha256}, nix-store --dump | sha256sum ${nix.sha256}`);
    bestNixHash = Math.min(bestNixHash, nixHash.seconds);

    const kiln = await timeKiln(tree, 'dumpPath');
    const hashOnly = await timeKiln(tree, 'hashPath');
    for (const k of [kiln, hashOnly]) if (k.sha256 !== nix.sha256) throw new Error(`kiln's NAR hash ${k.sha256} differs from Nix's ${nix.sha256}`);
    bestKiln = Math.min(bestKiln, kiln.seconds);
    bestHashPath = Math.min(bestHashPath, hashOnly.seconds);
    if (kiln.rss.peakDeltaBytes >= rss.peakDeltaBytes) rss = kiln.rss;
    log(`round ${round}: kiln dumpPath ${kiln.seconds.toFixed(2)} s, hashPath ${hashOnly.seconds.toFixed(2)} s, nix-store|sha256sum ${nix.seconds.toFixed(2)} s, nix-hash ${nixHash.seconds.toFixed(2)} s, kiln RSS +${(kiln.rss.peakDeltaBytes / MiB).toFixed(1)} MiB`);
  }

  const mbps = (s: number) => narBytes / 1e6 / s;
  const report: BenchNarReport = {
    treeBytes: info.bytes,
    files: info.files,
    narBytes,
    kiln: { seconds: bestKiln, mbPerSecond: mbps(bestKiln) },
    kilnHashPath: { seconds: bestHashPath, mbPerSecond: mbps(bestHashPath) },
    nix: { seconds: bestNix, mbPerSecond: mbps(bestNix) },
    ratio: bestNix / bestKiln,
    nixHash: { seconds: bestNixHash, mbPerSecond: mbps(bestNixHash), ratio: bestNixHash / bestKiln },
    rss,
  };
  log(`kiln dumpPath stream + SHA-256:  ${report.kiln.mbPerSecond.toFixed(0)} MB/s (${bestKiln.toFixed(2)} s)`);
  log(`kiln hashPath:                   ${report.kilnHashPath.mbPerSecond.toFixed(0)} MB/s (${bestHashPath.toFixed(2)} s)`);
  log(`nix-store --dump | sha256sum:    ${report.nix.mbPerSecond.toFixed(0)} MB/s (${bestNix.toFixed(2)} s)`);
  log(`ratio kiln/nix:                  ${report.ratio.toFixed(2)} (target ≥ 0.8)`);
  log(`nix-hash --type sha256 (ref.):   ${report.nixHash.mbPerSecond.toFixed(0)} MB/s (${bestNixHash.toFixed(2)} s), kiln/nix-hash ${report.nixHash.ratio.toFixed(2)}`);
  log(`kiln dumpPath RSS: baseline ${(rss.baselineBytes / MiB).toFixed(0)} MiB, peak ${(rss.peakBytes / MiB).toFixed(0)} MiB (+${(rss.peakDeltaBytes / MiB).toFixed(1)} MiB)`);
  return report;
}

async function timeKiln(tree: string, how: 'dumpPath' | 'hashPath'): Promise<{ seconds: number; sha256: string; rss: BenchNarReport['rss'] }> {
  const baselineBytes = process.memoryUsage.rss();
  let peakBytes = baselineBytes;
  // The writer yields to the event loop every few milliseconds, so this timer keeps sampling.
  const sampler = setInterval(() => (peakBytes = Math.max(peakBytes, process.memoryUsage.rss())), 5);
  const start = performance.now();
  try {
    let sha256: Buffer;
    if (how === 'hashPath') sha256 = (await hashPath(tree)).sha256;
    else {
      const nar = dumpPath(tree);
      for await (const _ of nar);
      sha256 = (await nar.result).sha256;
    }
    const seconds = (performance.now() - start) / 1000;
    peakBytes = Math.max(peakBytes, process.memoryUsage.rss());
    return { seconds, sha256: sha256.toString('hex'), rss: { baselineBytes, peakBytes, peakDeltaBytes: peakBytes - baselineBytes } };
  } finally {
    clearInterval(sampler);
  }
}

async function timeNix(tree: string): Promise<{ seconds: number; sha256: string }> {
  return timeCommand('bash', ['-c', 'set -o pipefail; nix-store --dump "$1" | sha256sum', 'bash', tree]);
}

/** Runs a command that prints a hex digest first on its output, timing it. */
async function timeCommand(command: string, args: string[]): Promise<{ seconds: number; sha256: string }> {
  const start = performance.now();
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  const code = await new Promise<number | null>((done, fail) => child.on('error', fail).on('close', done));
  const seconds = (performance.now() - start) / 1000;
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${code}`);
  return { seconds, sha256: out.trim().split(/\s/)[0]! };
}

/**
 * 256 MiB of small files (log-uniform sizes up to 64 KiB, 200 a directory, some executable,
 * some symlinks), 384 MiB of 1–8 MiB files, and three 128 MiB files. Sizes come from a seeded
 * generator and contents from AES-CTR under a fixed key: the same tree on every machine,
 * cheap to make. Contents are incompressible, which does not matter to NAR serialisation.
 */
function buildTree(root: string): TreeInfo {
  const random = mulberry32(0x6b696c6e);
  const keystream = createCipheriv('aes-256-ctr', createHash('sha256').update('kiln bench').digest(), Buffer.alloc(16));
  const info: TreeInfo = { bytes: 0, files: 0 };
  const write = (path: string, size: number, mode = 0o644) => {
    const fd = openSync(path, 'w', mode);
    try {
      for (let left = size; left > 0; left -= 8 * MiB) writeSync(fd, keystream.update(Buffer.alloc(Math.min(left, 8 * MiB))));
    } finally {
      closeSync(fd);
    }
    info.bytes += size;
    info.files += 1;
  };

  let smallBytes = 0;
  for (let i = 0; smallBytes < 256 * MiB; i++) {
    const dir = join(root, 'small', `d${Math.floor(i / 200)}`);
    if (i % 200 === 0) mkdirSync(dir, { recursive: true });
    if (i % 53 === 52) {
      symlinkSync(`f${i - 1}`, join(dir, `l${i}`));
      continue;
    }
    const size = Math.floor(Math.exp(random() * Math.log(64 * 1024)));
    write(join(dir, `f${i}`), size, i % 7 === 0 ? 0o755 : 0o644);
    smallBytes += size;
  }
  mkdirSync(join(root, 'medium'));
  for (let i = 0, mediumBytes = 0; mediumBytes < 384 * MiB; i++) {
    const size = MiB + Math.floor(random() * 7 * MiB);
    write(join(root, 'medium', `m${i}`), size);
    mediumBytes += size;
  }
  mkdirSync(join(root, 'large'));
  for (let i = 0; i < 3; i++) write(join(root, 'large', `l${i}`), 128 * MiB);
  return info;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  const roundsAt = args.indexOf('--rounds');
  const rounds = roundsAt >= 0 ? Number(args.splice(roundsAt, 2)[1]) : undefined;
  benchNar({ dataDir: args[0], rounds }).catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
