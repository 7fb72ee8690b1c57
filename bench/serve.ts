// Serving substitutes: kiln's binary cache against nginx serving the same narinfos and
// NARs as files, with the same load generator (wrk, one thread). The coordinator's
// database is filled directly (one INSERT ... SELECT from generate_series, not through
// the upload API, which would take hours at these sizes): N store paths, of which
// `hits` carry a narinfo signed with the coordinator's keys as the publish hook stores
// it; the rest are unpublished rows that make the index as large as N. Misses are
// random hash parts that no row has. The NARs are random bytes under nar/: serving
// never looks inside them.
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { openDatabase, type DatabaseHandle } from '../src/db/connection.js';
import { rowsOf } from '../src/db/rows.js';
import { BASE32_ALPHABET, encodeBase32 } from '../src/store/base32.js';
import { loadCacheKeys } from '../src/substitutes/cache-keys.js';
import { narInfoText, signNarInfoFields, type StoredPath } from '../src/substitutes/narinfo-text.js';
import { startCoordinatorProcess, type CoordinatorProcess } from '../test/helpers/coordinator-process.js';
import { underAgentLoad, type AgentLoad } from './serve-agents.js';
import { startNginx } from './nginx.js';
import { startPostgres } from '../test/helpers/postgres-server.js';
import type { Engine } from './schedule.js';
import { runWrk, type WrkRun } from './wrk.js';

export interface ServeOptions {
  paths?: number;
  engines?: Engine[];
  /** Published paths the hit requests draw from. */
  hits?: number;
  largeMiB?: number;
  seconds?: number;
  /** Also measure narinfo hits while simulated agents build on the same port (default true). */
  agents?: boolean;
}

export const SCENARIOS = ['narinfo hits', 'narinfo misses', 'narinfo 80 % misses', 'NAR 100 KiB', 'NAR large'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface ServeEngineReport {
  engine: Engine;
  paths: number;
  fillSeconds: number;
  /** From the coordinator's spawn to its first narinfo answered. */
  startSeconds: number;
  /** The coordinator's resident set after start and after the runs. */
  rssStartBytes: number;
  rssEndBytes: number;
  /** Narinfos a second on their first ask (a query each), 8 at a time. */
  coldPerSecond: number;
  /** What the coordinator logged when its cache index was loaded. */
  index: { paths: number; bytes: number; ms: number } | undefined;
  kiln: Record<Scenario, WrkRun>;
  /** Narinfo hits while agents built over gRPC on the same port. */
  underAgents?: { hits: WrkRun; load: AgentLoad };
}

export interface BenchServeReport {
  nginx: Record<Scenario, WrkRun>;
  engines: ServeEngineReport[];
  largeMiB: number;
}

const STORE = '/nix/store';
/** As the other benchmarks: KILN_BENCH_COORDINATOR_NODE_ARGS='--cpu-prof --cpu-prof-dir=DIR' profiles the coordinator. */
const nodeArgs = () => (process.env.KILN_BENCH_COORDINATOR_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);

function randomHashPart(): string {
  const bytes = randomBytes(32);
  let s = '';
  for (let i = 0; i < 32; i++) s += BASE32_ALPHABET[bytes[i]! & 31];
  return s;
}

/** N rows in one statement; hash parts from md5 (hex is base32 once `e` is mapped to `z`). */
async function fill(handle: DatabaseHandle, n: number): Promise<void> {
  const b32 = (expr: string) => sql.raw(`translate(${expr}, 'e', 'z')`);
  for (let from = 1; from <= n; from += 100_000) {
    const to = Math.min(n, from + 99_999);
    await handle.db.execute(sql`
      insert into store_paths (path, hash_part, nar_hash, nar_size, file_name, compression, file_hash, file_size)
      select ${STORE} || '/' || ${b32(`md5('p' || i)`)} || '-bench-' || i, ${b32(`md5('p' || i)`)},
        'sha256:' || ${b32(`md5('n' || i) || left(md5('o' || i), 20)`)}, 1000 + i,
        ${b32(`md5('f' || i) || left(md5('g' || i), 20)`)} || '.nar.lz4', 'lz4',
        'sha256:' || ${b32(`md5('f' || i) || left(md5('g' || i), 20)`)}, 500 + i
      from generate_series(${from}::int, ${to}::int) as i`);
  }
}

type Row = StoredPath & { hashPart: string };

/** Signs `count` of the rows as the publish hook would, and stores their narinfos. */
async function publishSome(handle: DatabaseHandle, dataDir: string, count: number): Promise<{ hashPart: string; text: string; fileName: string }[]> {
  const keys = loadCacheKeys({ dataDir });
  const rows = rowsOf<Row>(
    await handle.db.execute(sql`
      select path, hash_part as "hashPart", nar_hash as "narHash", nar_size::int as "narSize", "references", deriver,
        file_name as "fileName", compression, file_hash as "fileHash", file_size::int as "fileSize"
      from store_paths order by nar_hash limit ${count}`),
  );
  const signed = rows.map((r) => ({ ...r, ...signNarInfoFields(r, keys) }));
  const texts = signed.map((r) => narInfoText(r));
  await handle.db.execute(sql`
    update store_paths s set narinfo = u.t, narinfo_signer = ${keys.fingerprint},
      nix_signature = u.n, guix_signature = u.g, signature_key = ${keys.fingerprint}
    from unnest(${sql.param(rows.map((r) => r.path))}::text[], ${sql.param(texts)}::text[],
      ${sql.param(signed.map((r) => r.nixSignature))}::text[], ${sql.param(signed.map((r) => r.guixSignature))}::text[]) as u(p, t, n, g)
    where s.path = u.p`);
  // The rest stand for paths signed at their commit, which no request asks for: one
  // ed25519 signing each (about a thousand a second) would take minutes, so they carry the
  // first row's signatures, which do not verify for them. Without any, the coordinator's
  // backfill would sign them during the measurement, on its event loop and its database.
  await handle.db.execute(sql`
    update store_paths set nix_signature = ${signed[0]!.nixSignature}, guix_signature = ${signed[0]!.guixSignature}, signature_key = ${keys.fingerprint}
    where signature_key is null`);
  return rows.map((r, i) => ({ hashPart: r.hashPart, text: texts[i]!, fileName: r.fileName }));
}

function narFile(dir: string, bytes: number): string {
  const name = `${encodeBase32(randomBytes(32))}.nar.lz4`;
  const chunk = randomBytes(1 << 20);
  const parts: Buffer[] = [];
  for (let left = bytes; left > 0; left -= chunk.length) parts.push(left >= chunk.length ? chunk : chunk.subarray(0, left));
  writeFileSync(join(dir, name), Buffer.concat(parts));
  return name;
}

/** GETs every path once, `concurrency` at a time; a status other than 200 is an error. */
async function askEach(url: string, paths: string[], concurrency: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < paths.length; i = next++) {
        const res = await fetch(`${url}${paths[i]!}`);
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`kiln answered ${res.status} for ${paths[i]!}`);
      }
    }),
  );
}

/** The coordinator's "cache index loaded" log line: paths, packed bytes, milliseconds. */
function indexLoaded(stderr: string): ServeEngineReport['index'] {
  for (const line of stderr.split('\n')) {
    if (!line.includes('"cache index loaded"')) continue;
    const { paths, bytes, ms } = JSON.parse(line) as { paths: number; bytes: number; ms: number };
    return { paths, bytes, ms };
  }
  return undefined;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

interface Targets {
  hits: string[];
  misses: string[];
  mix: string[];
  small: string;
  large: string;
}

async function runAll(url: string, t: Targets, dir: string, seconds: number, warm: boolean): Promise<Record<Scenario, WrkRun>> {
  const plan: [Scenario, string[], number][] = [
    ['narinfo hits', t.hits, 32],
    ['narinfo misses', t.misses, 32],
    ['narinfo 80 % misses', t.mix, 32],
    ['NAR 100 KiB', [t.small], 32],
    ['NAR large', [t.large], 4],
  ];
  const out: Partial<Record<Scenario, WrkRun>> = {};
  for (const [name, paths, connections] of plan) {
    // A second of the same load first: the JIT and the page cache, not the figure.
    if (warm) await runWrk({ url, paths, connections, seconds: 1, dir });
    out[name] = await runWrk({ url, paths, connections, seconds, dir });
    const r = out[name];
    if (r.socketErrors > 0) console.log(`  ${name}: ${r.socketErrors} socket errors`);
  }
  return out as Record<Scenario, WrkRun>;
}

export async function benchServe(opts: ServeOptions = {}): Promise<BenchServeReport> {
  const n = opts.paths ?? 100_000;
  const hitCount = Math.min(opts.hits ?? 2_000, n);
  const largeMiB = opts.largeMiB ?? 100;
  const seconds = opts.seconds ?? 5;
  const engines = opts.engines ?? ['pglite', 'postgres'];
  const work = mkdtempSync(join(tmpdir(), 'kiln-bench-serve-'));
  const reports: ServeEngineReport[] = [];
  let nginxReport: Record<Scenario, WrkRun> | undefined;
  try {
    for (const engine of engines) {
      const dataDir = join(work, engine);
      mkdirSync(join(dataDir, 'nars', 'nar'), { recursive: true });
      const pg = engine === 'postgres' ? await startPostgres() : undefined;
      let coordinator: CoordinatorProcess | undefined;
      try {
        const filling = performance.now();
        const handle = await openDatabase(pg ? { url: pg.url } : { dataDir: join(dataDir, 'db') });
        let published: { hashPart: string; text: string; fileName: string }[];
        try {
          await fill(handle, n);
          published = await publishSome(handle, dataDir, hitCount);
        } finally {
          await handle.close();
        }
        const fillSeconds = (performance.now() - filling) / 1000;
        const narDir = join(dataDir, 'nars', 'nar');
        const small = narFile(narDir, 100 * 1024);
        const large = narFile(narDir, largeMiB << 20);
        // A hit checks that the NARs its narinfo names are there (another replica may have collected them).
        for (const p of published) linkSync(join(narDir, small), join(narDir, p.fileName));
        console.log(`${engine}: ${n.toLocaleString('en')} paths (${hitCount} published) in ${fillSeconds.toFixed(1)} s`);

        const targets: Targets = {
          hits: published.map((p) => `/${p.hashPart}.narinfo`),
          misses: Array.from({ length: 2_000 }, () => `/${randomHashPart()}.narinfo`),
          mix: [],
          small: `/nar/${small}`,
          large: `/nar/${large}`,
        };
        for (let i = 0; i < 1_000; i++) targets.mix.push(i % 5 === 0 ? targets.hits[i % targets.hits.length]! : targets.misses[i]!);

        if (!nginxReport) {
          // The same texts and files, as `kiln cache export` lays them out.
          const root = join(work, 'mirror');
          mkdirSync(join(root, 'nar'), { recursive: true });
          writeFileSync(join(root, 'nix-cache-info'), `StoreDir: ${STORE}\nWantMassQuery: 1\nPriority: 40\n`);
          for (const p of published) writeFileSync(join(root, `${p.hashPart}.narinfo`), p.text);
          for (const f of [small, large]) linkSync(join(narDir, f), join(root, 'nar', f));
          const nginxDir = join(work, 'nginx');
          mkdirSync(nginxDir);
          const nginx = await startNginx(root, nginxDir);
          try {
            nginxReport = await runAll(nginx.url, targets, work, seconds, true);
          } finally {
            await nginx.stop();
          }
        }

        const spawned = performance.now();
        // Info, not warn: the index's size and load time are in its log line.
        coordinator = await startCoordinatorProcess({ dataDir, databaseUrl: pg?.url, env: { KILN_LOG_LEVEL: 'info' }, nodeArgs: nodeArgs(), startTimeoutMs: 600_000 });
        const first = await fetch(`${coordinator.url}${targets.hits[0]!}`);
        if (first.status !== 200) throw new Error(`kiln answered ${first.status} for a published narinfo`);
        await first.text();
        const startSeconds = (performance.now() - spawned) / 1000;
        const rssStartBytes = rssBytes(coordinator.child.pid!);
        const index = indexLoaded(coordinator.stderr());
        // Hits measure the texts in memory: each published narinfo asked once first (its
        // first ask is a query; wrk's one-second warm-up did not reach all 2,000).
        const coldStart = performance.now();
        await askEach(coordinator.url, targets.hits, 8);
        const coldPerSecond = targets.hits.length / ((performance.now() - coldStart) / 1000);
        const kiln = await runAll(coordinator.url, targets, work, seconds, true);
        const rssEndBytes = rssBytes(coordinator.child.pid!);
        const url = coordinator.url;
        const underAgents =
          opts.agents === false
            ? undefined
            : await underAgentLoad({ url, dataDir, coordinatorPid: coordinator.child.pid! }, () => runWrk({ url, paths: targets.hits, connections: 32, seconds, dir: work })).then(
                ({ result, load }) => ({ hits: result, load }),
              );
        reports.push({ engine, paths: n, fillSeconds, startSeconds, rssStartBytes, rssEndBytes, index, coldPerSecond, kiln, underAgents });
      } finally {
        await coordinator?.stop();
        await pg?.stop();
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const report = { nginx: nginxReport!, engines: reports, largeMiB };
  printServe(report);
  return report;
}

const MB = 1e6;

function printServe(r: BenchServeReport): void {
  const cell = (w: WrkRun) => `${w.requestsPerSecond.toFixed(0).padStart(7)} req/s ${(w.bytesPerSecond / MB).toFixed(1).padStart(7)} MB/s p50 ${w.p50Ms.toFixed(2).padStart(6)} p99 ${w.p99Ms.toFixed(2).padStart(6)} ms`;
  for (const e of r.engines) {
    console.log(`\n${e.engine}, ${e.paths.toLocaleString('en')} paths: start to first narinfo ${e.startSeconds.toFixed(1)} s, RSS ${(e.rssStartBytes / MB).toFixed(0)} → ${(e.rssEndBytes / MB).toFixed(0)} MB`);
    console.log(`  narinfo first asks (a query each, 8 at a time): ${e.coldPerSecond.toFixed(0)}/s`);
    if (e.index) {
      const perPath = e.index.bytes / Math.max(1, e.index.paths);
      console.log(`  index: ${e.index.paths.toLocaleString('en')} paths, ${(e.index.bytes / MB).toFixed(1)} MB packed (${perPath.toFixed(0)} B a path, 10 M paths: ${((perPath * 1e7) / MB).toFixed(0)} MB), loaded in ${(e.index.ms / 1000).toFixed(1)} s`);
    }
    for (const s of SCENARIOS) {
      const k = e.kiln[s];
      const x = r.nginx[s];
      const ratio = s.startsWith('NAR') ? k.bytesPerSecond / x.bytesPerSecond : k.requestsPerSecond / x.requestsPerSecond;
      const label = s === 'NAR large' ? `NAR ${r.largeMiB} MiB` : s;
      console.log(`  ${label.padEnd(20)} kiln  ${cell(k)}\n  ${''.padEnd(20)} nginx ${cell(x)}  ratio ${ratio.toFixed(2)}`);
    }
    if (e.underAgents) {
      const { hits, load } = e.underAgents;
      console.log(
        `  hits, agents busy    kiln  ${cell(hits)}  ratio ${(hits.requestsPerSecond / r.nginx['narinfo hits'].requestsPerSecond).toFixed(2)}, ${(hits.requestsPerSecond / e.kiln['narinfo hits'].requestsPerSecond).toFixed(2)} of idle\n` +
          `  ${''.padEnd(20)} beside ${load.agents} agents × ${load.slots} slots over gRPC on the port: ${load.builds} builds (${load.buildsPerSecond.toFixed(0)}/s, ${load.left} still queued), coordinator ${load.coordinatorCores.toFixed(2)} cores`,
      );
    }
  }
}

/** kiln / nginx: MB/s for NARs, requests for narinfos. */
export function serveRatio(r: BenchServeReport, e: ServeEngineReport, s: Scenario): number {
  return s.startsWith('NAR') ? e.kiln[s].bytesPerSecond / r.nginx[s].bytesPerSecond : e.kiln[s].requestsPerSecond / r.nginx[s].requestsPerSecond;
}
