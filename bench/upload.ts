// Benchmark: an output NAR's way from agent to coordinator, end to end.
//
// (a) Throughput: a 1 GiB output tree goes the whole way — on the agent, dumpPath (NAR +
//     SHA-256) → lz4Frames → the UploadOutput gRPC stream; in the coordinator, LZ4
//     decompression, SHA-256, the NAR structure check, the staged write, the rename and the
//     database record — timed until the call returns. Beside it, what issue 5 measures it
//     against: lz4-napi compressing the same bytes alone (compressFrame on the NAR in 256 KiB
//     pieces, the agent's chunk size when the target was set, from memory, one call after
//     the other). upload / compressor is the target figure (≥ 0.7).
//     Also shown, not a target: the uploader's own compressor (its frames made around
//     lz4-napi's block compressor) with its window of frames in flight (lz4Frames), which
//     has both of this machine's cores to itself. The upload path
//     shares those two cores between agent and coordinator (in production they are two
//     machines) and does much more than compress: SHA-256 of the NAR on the agent, LZ4
//     decoding and two SHA-256s (NAR, stored file) on the coordinator, the NAR parse, protobuf
//     and HTTP/2 framing on both sides and their garbage collection. Each round prints the
//     CPU seconds each side used (main thread + the rest: libuv's pool, V8's GC helpers), so
//     that the budget behind the ratio is visible.
//     Upload and compressor runs alternate, round by round, so that both see the same load
//     on a shared machine; the best of each is reported.
// (b) Coordinator memory: a 4 GiB output uploaded the same way while the coordinator's RSS
//     (/proc/<pid>/status VmRSS) is sampled every 100 ms; the growth over its baseline must
//     stay small (target < 64 MiB) whatever the output's size. What an upload adds is
//     mostly lz4-napi's decompressed chunks waiting for V8's next GC (their memory is lz4-napi's
//     own allocator's, so it shows as new RSS; V8 collects after ~64 MB of external memory),
//     which is why the figure moves between runs. A baseline sampled while start-up memory
//     is still being released can hide part of it, so read it over several runs.
//
// The coordinator is a separate process (`kiln coordinator`, PGlite in a temporary data dir),
// as in production, so that agent and coordinator do not share one event loop. Contents are
// a mix of text-like bytes (which LZ4 shrinks to ~59 %) and incompressible ones, as real outputs are.
// The 1 GiB tree is built once under bench-data/; the 4 GiB file is written for the run and
// deleted with the coordinator's data afterwards.
//
//   npx tsc -p tsconfig.build.json && node dist/bench/upload.js [data-dir] [--rounds N] [--big-gib N]
import { ensureTree, mulberry32, type TreeInfo } from './cached-tree.js';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash, type Cipher } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { create } from '@bufbuild/protobuf';
import { compressFrame } from 'lz4-napi';
import { ConnectRequestSchema, type AssignBuild, type ConnectRequest } from '../gen/kiln/v1/agent_pb.js';
import { agentClient } from '../src/agent/agent.js';
import { useAgentHeapSettings } from '../src/agent/heap-settings.js';
import { lz4Frames, UPLOAD_CHUNK_BYTES, uploadOutput } from '../src/agent/uploader.js';
import { AsyncQueue } from '../src/async-queue.js';
import { createAdminClient } from '../src/client/admin-client.js';
import { silentLogger } from '../src/logger.js';
import { dumpPath, hashPath } from '../src/store/nar-writer.js';

export interface BenchUploadOptions {
  /** Where the 1 GiB tree is built once and kept (default `bench-data/`). */
  dataDir?: string;
  /** Timed uploads of the 1 GiB tree, and timed runs of each compressor; best reported (default 3). */
  rounds?: number;
  /** Size of the output for the memory run, in GiB (default 4; 0 skips it). */
  bigGiB?: number;
  log?: (line: string) => void;
}

interface Rate {
  seconds: number;
  mbPerSecond: number;
}

export interface BenchUploadReport {
  throughput: {
    treeBytes: number;
    files: number;
    narBytes: number;
    /** Bytes on the wire / in the store: the LZ4 frames. */
    compressedBytes: number;
    /** The whole path, agent to recorded store path (NAR MB per second). */
    upload: Rate;
    /** compressFrame alone on the NAR in BASELINE_CHUNK_BYTES pieces from memory, awaited one at a time. */
    lz4Sequential: Rate;
    /** The uploader's own frames (lz4-napi's block compressor) through lz4Frames: its window of frames in flight, on both cores. */
    lz4Window: Rate;
    /** upload / lz4Sequential: the figure (target ≥ 0.7). */
    ratio: number;
    /** upload / lz4Window, for information. */
    ratioWindow: number;
  };
  memory?: {
    narBytes: number;
    compressedBytes: number;
    upload: Rate;
    samples: number;
    /** Coordinator RSS with the agent connected and the build assigned, before the upload. */
    baselineBytes: number;
    peakBytes: number;
    /** peak − baseline (target < 64 MiB). */
    growthBytes: number;
  };
}

const UPLOAD_TREE_VERSION = 'upload-tree-v1';
/**
 * The pieces the compressFrame baseline compresses: the agent's chunk size when issue 5 set
 * the target (256 KiB), kept when the agent's chunks grew so that the baseline stays the one
 * the target was set against.
 */
const BASELINE_CHUNK_BYTES = 256 << 10;
const MiB = 1 << 20;
const GiB = 1 << 30;
const RSS_INTERVAL_MS = 100;
const KILN_MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const NIX_CONFIG = ['sandbox = false', 'build-users-group =', 'substituters =', 'experimental-features = nix-command'].join('\n');

export async function benchUpload(options: BenchUploadOptions = {}): Promise<BenchUploadReport> {
  // This process is the agent side of the path: it runs with the agent's heap settings, as `kiln agent run` does.
  useAgentHeapSettings();
  const log = options.log ?? ((line: string) => console.log(line));
  const rounds = options.rounds ?? 3;
  const bigGiB = options.bigGiB ?? 4;
  const dataDir = resolve(options.dataDir ?? 'bench-data');
  const { tree, info } = ensureTree(dataDir, UPLOAD_TREE_VERSION, buildTree, log);
  log(`upload tree: ${tree} — ${info.files} files, ${(info.bytes / MiB).toFixed(0)} MiB, two thirds text-like`);

  // An untimed pass first so that every run reads the tree from the page cache.
  const narBytes = (await hashPath(tree)).size;

  // The NAR's chunks as the agent makes them, held in memory for the compressor-only runs.
  const chunks: Buffer[] = [];
  const nar = dumpPath(tree, { chunkSize: UPLOAD_CHUNK_BYTES });
  for await (const chunk of nar) chunks.push(chunk);
  if ((await nar.result).size !== narBytes) throw new Error('the NAR changed between runs');

  let compressedBytes = 0;
  let bestUpload = Infinity;
  let bestSequential = Infinity;
  let bestWindow = Infinity;
  for (let round = 1; round <= rounds; round++) {
    const run = await uploadThroughCoordinator(tree, `kiln-bench-upload-${round}`);
    if (run.narSize !== narBytes) throw new Error(`the upload declared ${run.narSize} NAR bytes, dumpPath made ${narBytes}`);
    compressedBytes = run.fileSize;
    bestUpload = Math.min(bestUpload, run.seconds);
    log(`round ${round}: upload ${run.seconds.toFixed(2)} s (${(narBytes / 1e6 / run.seconds).toFixed(0)} MB/s), CPU s (main thread + the rest) agent ${showCpu(run.cpu.agent)}, coordinator ${showCpu(run.cpu.coordinator)}, coordinator RSS ${(run.rss.baselineBytes / MiB).toFixed(0)} MiB +${(run.rss.growthBytes / MiB).toFixed(1)} MiB`);

    let start = performance.now();
    let size = 0;
    for (const piece of baselinePieces(chunks)) size += (await compressFrame(piece)).length;
    const sequential = (performance.now() - start) / 1000;
    start = performance.now();
    let windowSize = 0;
    for await (const frame of lz4Frames(fromArray(chunks))) windowSize += frame.length;
    const window = (performance.now() - start) / 1000;
    if (windowSize !== compressedBytes) throw new Error(`lz4Frames made ${windowSize} bytes, the coordinator stored ${compressedBytes}`);
    bestSequential = Math.min(bestSequential, sequential);
    bestWindow = Math.min(bestWindow, window);
    log(`round ${round}: lz4 compressFrame alone ${sequential.toFixed(2)} s (${((100 * size) / narBytes).toFixed(1)} % of the NAR), the uploader's frames with its window ${window.toFixed(2)} s (${((100 * windowSize) / narBytes).toFixed(1)} %)`);
  }
  chunks.length = 0; // let the gigabyte go before the memory run

  const rate = (bytes: number, seconds: number): Rate => ({ seconds, mbPerSecond: bytes / 1e6 / seconds });
  const report: BenchUploadReport = {
    throughput: {
      treeBytes: info.bytes,
      files: info.files,
      narBytes,
      compressedBytes,
      upload: rate(narBytes, bestUpload),
      lz4Sequential: rate(narBytes, bestSequential),
      lz4Window: rate(narBytes, bestWindow),
      ratio: bestSequential / bestUpload,
      ratioWindow: bestWindow / bestUpload,
    },
  };
  const t = report.throughput;
  log(`upload 1 GiB, agent → recorded:           ${t.upload.mbPerSecond.toFixed(0)} MB/s (${t.upload.seconds.toFixed(2)} s, ${(compressedBytes / MiB).toFixed(0)} MiB sent)`);
  log(`lz4 compressFrame alone:                  ${t.lz4Sequential.mbPerSecond.toFixed(0)} MB/s (${t.lz4Sequential.seconds.toFixed(2)} s)`);
  log(`uploader's lz4 frames, with its window:  ${t.lz4Window.mbPerSecond.toFixed(0)} MB/s (${t.lz4Window.seconds.toFixed(2)} s)`);
  log(`ratio upload / lz4 alone:                 ${t.ratio.toFixed(2)} (target ≥ 0.7); upload / lz4 window ${t.ratioWindow.toFixed(2)}`);

  if (bigGiB > 0) {
    const scratch = mkdtempSync(join(tmpdir(), 'kiln-bench-big-'));
    try {
      const file = join(scratch, 'big');
      const started = performance.now();
      writeMixedFile(file, bigGiB * GiB);
      log(`wrote a ${bigGiB} GiB mixed file in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      const run = await uploadThroughCoordinator(file, 'kiln-bench-upload-big');
      const m = {
        narBytes: run.narSize,
        compressedBytes: run.fileSize,
        upload: rate(run.narSize, run.seconds),
        samples: run.rss.samples,
        baselineBytes: run.rss.baselineBytes,
        peakBytes: run.rss.peakBytes,
        growthBytes: run.rss.growthBytes,
      };
      report.memory = m;
      log(`upload ${bigGiB} GiB: ${m.upload.mbPerSecond.toFixed(0)} MB/s (${m.upload.seconds.toFixed(1)} s, ${(m.compressedBytes / MiB).toFixed(0)} MiB sent)`);
      log(`coordinator RSS: baseline ${(m.baselineBytes / MiB).toFixed(0)} MiB, peak ${(m.peakBytes / MiB).toFixed(0)} MiB, growth +${(m.growthBytes / MiB).toFixed(1)} MiB over ${m.samples} samples (target < 64 MiB)`);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }
  return report;
}

interface UploadRun {
  seconds: number;
  narSize: number;
  fileSize: number;
  /** CPU time (user + system) each side spent during the upload. */
  cpu: { agent: CpuSeconds; coordinator: CpuSeconds };
  rss: { samples: number; baselineBytes: number; peakBytes: number; growthBytes: number };
}

/**
 * Starts a coordinator process on a fresh data dir, makes an agent and a build, takes the
 * build on a control stream, uploads `diskPath` as its output while sampling the
 * coordinator's RSS, and stops it all, deleting the data dir.
 */
async function uploadThroughCoordinator(diskPath: string, drvName: string): Promise<UploadRun> {
  const coordinator = await startCoordinatorProcess();
  const stop = new AbortController();
  try {
    const admin = createAdminClient(coordinator.url, coordinator.adminToken);
    const { agent } = await admin.createAgent({ name: 'bench' });
    const { password } = await admin.createAgentPassword({ agentId: agent!.id });
    const drvPath = instantiate(drvName);
    await admin.submitBuild({ derivationPath: drvPath, derivations: [{ path: drvPath, text: readFileSync(drvPath) }] });

    const client = agentClient(coordinator.url, agent!.id, password);
    const outbox = new AsyncQueue<ConnectRequest>();
    outbox.push(create(ConnectRequestSchema, { message: { case: 'hello', value: { systems: ['x86_64-linux'], maxParallelBuilds: 1, version: 'bench' } } }));
    const responses = client.connect(outbox, { signal: stop.signal })[Symbol.asyncIterator]();
    let assign: AssignBuild | undefined;
    while (!assign) {
      const next = await responses.next();
      if (next.done) throw new Error('the control stream ended before a build was assigned');
      if (next.value.message.case === 'assignBuild') assign = next.value.message.value;
    }
    // Keep reading the stream (pings, acknowledgements) while the upload runs.
    const drain = (async () => {
      for (;;) if ((await responses.next()).done) return;
    })().catch(() => undefined);
    const out = assign.outputs.find((o) => o.name === 'out');
    if (!out) throw new Error(`build ${assign.buildId} has no output "out"`);

    const baseline: number[] = [];
    for (let i = 0; i < 5; i++) {
      baseline.push(readRss(coordinator.pid));
      await sleep(RSS_INTERVAL_MS);
    }
    const baselineBytes = Math.max(...baseline);
    let peakBytes = baselineBytes;
    let samples = 0;
    const sampler = setInterval(() => {
      peakBytes = Math.max(peakBytes, readRss(coordinator.pid));
      samples++;
    }, RSS_INTERVAL_MS);
    const coordinatorCpu = readCpuSeconds(coordinator.pid);
    const agentCpu = readCpuSeconds(process.pid);
    const start = performance.now();
    let info;
    try {
      info = await uploadOutput({ client, signal: stop.signal, log: silentLogger() }, assign.buildId, { name: 'out', storePath: out.path, diskPath, references: [] });
    } finally {
      clearInterval(sampler);
    }
    const seconds = (performance.now() - start) / 1000;
    const cpu = { coordinator: cpuSince(coordinator.pid, coordinatorCpu), agent: cpuSince(process.pid, agentCpu) };
    peakBytes = Math.max(peakBytes, readRss(coordinator.pid));
    stop.abort();
    outbox.end();
    await drain;
    const fileSize = storedBytes(join(coordinator.dataDir, 'nars', 'nar'));
    return {
      seconds,
      narSize: Number(info.narSize),
      fileSize,
      cpu,
      rss: { samples, baselineBytes, peakBytes, growthBytes: peakBytes - baselineBytes },
    };
  } finally {
    stop.abort();
    await coordinator.stop();
  }
}

interface CoordinatorProcess {
  url: string;
  pid: number;
  adminToken: string;
  dataDir: string;
  stop(): Promise<void>;
}

async function startCoordinatorProcess(): Promise<CoordinatorProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kiln-bench-coord-'));
  const port = await freePort();
  // e.g. KILN_BENCH_COORDINATOR_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' to profile it.
  const nodeArgs = (process.env.KILN_BENCH_COORDINATOR_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, KILN_MAIN, 'coordinator', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, KILN_ADMIN_TOKEN: '', LOG_LEVEL: 'warn' },
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-4000)));
  const exited = new Promise<number | null>((done) => child.on('exit', done));
  const cleanup = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    const url = `http://127.0.0.1:${port}`;
    await waitReady(child, url, () => stderr);
    return { url, pid: child.pid!, dataDir, adminToken: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim(), stop: cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function waitReady(child: ChildProcess, url: string, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the coordinator exited with ${child.exitCode}: ${stderr()}`);
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`the coordinator did not become ready in 60 s: ${stderr()}`);
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? done(address.port) : fail(new Error('no port'))));
    });
  });
}

/** Size of the largest file in the coordinator's store: the output (beside it, the small .drv). */
function storedBytes(dir: string): number {
  return Math.max(...readdirSync(dir).map((name) => statSync(join(dir, name)).size));
}

interface CpuSeconds {
  /** All threads. */
  total: number;
  /** The event loop's thread; the rest is libuv's pool (compression, file I/O) and V8's helpers. */
  main: number;
}

/** User + system CPU time of a process, all threads and its main thread, from /proc. */
function readCpuSeconds(pid: number): CpuSeconds {
  const ticks = (statFile: string) => {
    const stat = readFileSync(statFile, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime in clock ticks (USER_HZ = 100)
  };
  return { total: ticks(`/proc/${pid}/stat`) / 100, main: ticks(`/proc/${pid}/task/${pid}/stat`) / 100 };
}

function cpuSince(pid: number, before: CpuSeconds): CpuSeconds {
  const now = readCpuSeconds(pid);
  return { total: now.total - before.total, main: now.main - before.main };
}

function readRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!kb) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kb[1]) * 1024;
}

/** A derivation for the coordinator to assign (its builder never runs: only its output path matters). */
function instantiate(name: string): string {
  const expr = `derivation { name = "${name}"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; }`;
  return execFileSync('nix-instantiate', ['--expr', expr], { env: { ...process.env, NIX_CONFIG }, stdio: ['ignore', 'pipe', 'pipe'] })
    .toString()
    .trim();
}

/** The chunks cut into BASELINE_CHUNK_BYTES pieces (views, not copies). */
function* baselinePieces(chunks: Buffer[]): Generator<Buffer> {
  for (const chunk of chunks) {
    for (let at = 0; at < chunk.length; at += BASELINE_CHUNK_BYTES) yield chunk.subarray(at, at + BASELINE_CHUNK_BYTES);
  }
}

async function* fromArray(chunks: Buffer[]): AsyncGenerator<Buffer> {
  for (const chunk of chunks) yield chunk;
}

const showCpu = (c: CpuSeconds) => `${c.main.toFixed(1)} + ${(c.total - c.main).toFixed(1)}`;

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

// ---- Data: text-like and incompressible bytes, deterministic ----

/**
 * Mixed contents: 64 KiB blocks (LZ4's window), each either text-like — a slice of a pool of
 * pseudo-words in lines, which LZ4 shrinks to about 59 % — or AES-CTR keystream, which it
 * cannot shrink, two to one, chosen by a seeded generator.
 */
class MixedBytes {
  private readonly random: () => number;
  private readonly keystream: Cipher;
  private readonly text: Buffer;

  constructor(seed: number) {
    this.random = mulberry32(seed);
    this.keystream = createCipheriv('aes-256-ctr', createHash('sha256').update(`kiln upload bench ${seed}`).digest(), Buffer.alloc(16));
    this.text = textPool(mulberry32(seed ^ 0x5eed), 8 * MiB);
  }

  /** `size` bytes: text-like only, random only, or mixed block by block. */
  next(size: number, kind: 'text' | 'random' | 'mixed' = 'mixed'): Buffer {
    const out = Buffer.allocUnsafe(size);
    for (let at = 0; at < size; at += 64 * 1024) {
      const n = Math.min(64 * 1024, size - at);
      const text = kind === 'text' || (kind === 'mixed' && this.random() < 2 / 3);
      if (text) {
        const from = Math.floor(this.random() * (this.text.length - n));
        this.text.copy(out, at, from, from + n);
      } else {
        this.keystream.update(Buffer.alloc(n)).copy(out, at);
      }
    }
    return out;
  }
}

/**
 * Lines of pseudo-words drawn with Zipf's law (a few very common, a long tail), and some
 * numbers: LZ4 leaves about 59 % of it, as it does of English text (enwik8: 57 %).
 */
function textPool(random: () => number, size: number): Buffer {
  const letters = 'etaoinshrdlcumwfgypbvkjxqz';
  const words: string[] = [];
  const cdf: number[] = [];
  let total = 0;
  for (let rank = 1; rank <= 4096; rank++) {
    const length = 2 + Math.floor(random() * 8);
    let w = '';
    for (let j = 0; j < length; j++) w += letters[Math.floor(random() * random() * letters.length)];
    words.push(w);
    cdf.push((total += 1 / rank));
  }
  const pick = () => {
    const r = random() * total;
    let lo = 0;
    let hi = words.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < r) lo = mid + 1;
      else hi = mid;
    }
    return words[lo]!;
  };
  const parts: string[] = [];
  let bytes = 0;
  while (bytes < size) {
    let line = '';
    const n = 4 + Math.floor(random() * 10);
    for (let i = 0; i < n; i++) line += (i ? ' ' : '') + (random() < 0.04 ? String(Math.floor(random() * 1e5)) : pick());
    line += random() < 0.3 ? ';\n' : '.\n';
    parts.push(line);
    bytes += line.length;
  }
  return Buffer.from(parts.join(''), 'latin1').subarray(0, size);
}

function writeMixedFile(path: string, size: number): void {
  const data = new MixedBytes(0x6b696c6f);
  const fd = openSync(path, 'w');
  try {
    for (let left = size; left > 0; left -= 8 * MiB) writeSync(fd, data.next(Math.min(left, 8 * MiB)));
  } finally {
    closeSync(fd);
  }
}

/**
 * An output of 1 GiB shaped like a package: 128 MiB of small text files (docs, headers,
 * scripts; some executable, some symlinks), 512 MiB of 1–8 MiB mixed files (libraries), and
 * three 128 MiB mixed files.
 */
function buildTree(root: string): TreeInfo {
  const random = mulberry32(0x75706c64);
  const data = new MixedBytes(0x6b696c6e);
  const info: TreeInfo = { bytes: 0, files: 0 };
  const write = (path: string, size: number, kind: 'text' | 'mixed', mode = 0o644) => {
    const fd = openSync(path, 'w', mode);
    try {
      for (let left = size; left > 0; left -= 8 * MiB) writeSync(fd, data.next(Math.min(left, 8 * MiB), kind));
    } finally {
      closeSync(fd);
    }
    info.bytes += size;
    info.files += 1;
  };
  let smallBytes = 0;
  for (let i = 0; smallBytes < 128 * MiB; i++) {
    const dir = join(root, 'share', `d${Math.floor(i / 200)}`);
    if (i % 200 === 0) mkdirSync(dir, { recursive: true });
    if (i % 53 === 52) {
      symlinkSync(`f${i - 1}`, join(dir, `l${i}`));
      continue;
    }
    const size = Math.floor(Math.exp(random() * Math.log(64 * 1024)));
    write(join(dir, `f${i}`), size, 'text', i % 7 === 0 ? 0o755 : 0o644);
    smallBytes += size;
  }
  mkdirSync(join(root, 'lib'));
  for (let i = 0, libBytes = 0; libBytes < 512 * MiB; i++) {
    const size = MiB + Math.floor(random() * 7 * MiB);
    write(join(root, 'lib', `lib${i}.so`), size, 'mixed');
    libBytes += size;
  }
  mkdirSync(join(root, 'large'));
  for (let i = 0; i < 3; i++) write(join(root, 'large', `blob${i}`), 128 * MiB, 'mixed');
  return info;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  const take = (flag: string) => {
    const at = args.indexOf(flag);
    return at >= 0 ? Number(args.splice(at, 2)[1]) : undefined;
  };
  const rounds = take('--rounds');
  const bigGiB = take('--big-gib');
  benchUpload({ dataDir: args[0], rounds, bigGiB }).catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
