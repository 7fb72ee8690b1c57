// `npm run bench -- --only upstream`: a layered DAG of derivations (each depends on 1–3
// of the layer below) whose lower half's outputs a signed upstream cache holds. Only the
// top layer is submitted, with every derivation text; the coordinator (a process, PGlite,
// submission of missing inputs on) submits builds for the inputs no upstream has. Counted:
// the builds it made (expected: the upper half), the upstream's narinfo requests (all of
// them, and per build made), the SubmitBuilds latency, and the time until the lowest layer
// kiln builds has no missing inputs (waiting_inputs = 0): what the lookups cost on the
// way to ready. The same DAG with no upstream (every derivation built) is the baseline.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Derivation } from '../src/store/derivation.js';
import { createAdminClient } from '../sdk/typescript/src/index.js';
import { encodeBase32 } from '../src/store/base32.js';
import { makeDerivation, type MadeDerivation } from '../src/store/make-derivation.js';
import { renderNarInfo } from '../src/store/narinfo.js';
import { generateNixKey, renderNixPublicKey, signNarInfo, type NixSecretKey } from '../src/store/nix-signature.js';
import { startCoordinatorProcess } from '../test/helpers/coordinator-process.js';
import { createDatabase, dropDatabase, freePort, startPostgres } from '../test/helpers/postgres-server.js';

export type UpstreamEngine = 'pglite' | 'postgres';

export interface UpstreamRun {
  engine: UpstreamEngine;
  upstream: boolean;
  derivations: number;
  /** Builds the coordinator made, and how many were expected. */
  builds: number;
  expected: number;
  narinfoRequests: number;
  /** Of those, answered with a narinfo (the rest 404), and for how many distinct paths. */
  narinfoHits: number;
  distinctPaths: number;
  submitMs: number;
  /** From the submission until every build of the lowest layer kiln builds has waiting_inputs = 0. */
  lowestReadyMs: number;
  /** From the submission until the build count reached the expected one. */
  allBuildsMs: number;
}

export interface BenchUpstreamReport {
  runs: UpstreamRun[];
}

const LAYERS = 10;
const WIDTH = 20;
/** How long a run may take before it is reported as it stands. */
const RUN_LIMIT_MS = 120_000;
/** After the builds reach the expected count, how long nothing more may change. */
const SETTLE_MS = 2_000;

/** A deterministic generator (mulberry32): the same DAG every run. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Layer by layer; derivation j of a layer depends on j of the layer below (so each is needed) and 0–2 others. */
function makeDag(): MadeDerivation[][] {
  const rand = random(14);
  const resolve = new Map<string, Derivation>();
  const layers: MadeDerivation[][] = [];
  for (let l = 0; l < LAYERS; l++) {
    const layer: MadeDerivation[] = [];
    for (let j = 0; j < WIDTH; j++) {
      const inputDrvs = new Map<string, string[]>();
      const below = layers[l - 1];
      if (below) {
        inputDrvs.set(below[j]!.path, ['out']);
        const extra = Math.floor(rand() * 3);
        for (let k = 0; k < extra; k++) inputDrvs.set(below[Math.floor(rand() * WIDTH)]!.path, ['out']);
      }
      const d = makeDerivation({ name: `up-${l}-${j}`, system: 'x86_64-linux', builder: '/bin/sh', args: ['-c', `echo ${l} ${j} > $out`], inputDrvs }, '/nix/store', resolve);
      resolve.set(d.path, d.drv);
      layer.push(d);
    }
    layers.push(layer);
  }
  return layers;
}

function signedNarInfo(path: string, key: NixSecretKey): string {
  const narHash = `sha256:${encodeBase32(createHash('sha256').update(path).digest())}`;
  return renderNarInfo(signNarInfo({ storePath: path, files: [{ url: 'nar/x.nar', compression: 'none' }], narHash, narSize: 120, references: [], sigs: [], extra: [] }, key));
}

/** A binary cache of narinfos only: those of `paths`, 404 for the rest; counts the narinfo requests. */
async function narInfoServer(paths: string[], key: NixSecretKey) {
  const answers = new Map(paths.map((p) => [p.slice('/nix/store/'.length, '/nix/store/'.length + 32), signedNarInfo(p, key)]));
  let requests = 0;
  let hits = 0;
  const asked = new Set<string>();
  const server = createServer((req, res) => {
    const hash = /^\/([0-9a-z]{32})\.narinfo$/.exec(req.url ?? '')?.[1];
    if (hash !== undefined) {
      requests++;
      asked.add(hash);
      if (answers.has(hash)) hits++;
    }
    if (req.url === '/nix-cache-info') {
      res.writeHead(200, { 'content-type': 'text/x-nix-cache-info' });
      return void res.end('StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n');
    }
    const body = hash === undefined ? undefined : answers.get(hash);
    res.writeHead(body ? 200 : 404, { 'content-type': 'text/x-nix-narinfo' });
    res.end(body ?? '404');
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => requests,
    hits: () => hits,
    distinct: () => asked.size,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function run(layers: MadeDerivation[][], withUpstream: boolean, engine: UpstreamEngine, databaseUrl?: string): Promise<UpstreamRun> {
  const lower = layers.slice(0, LAYERS / 2);
  const key = generateNixKey('bench-upstream-1');
  const upstream = withUpstream ? await narInfoServer(lower.flat().flatMap((d) => [...d.outputs.values()]), key) : undefined;
  const dataDir = mkdtempSync(join(tmpdir(), 'kiln-bench-upstream-'));
  const args = upstream ? ['--upstream', upstream.url, '--upstream-key', renderNixPublicKey(key.publicKey)] : [];
  const coordinator = await startCoordinatorProcess({ dataDir, args, databaseUrl });
  try {
    const admin = createAdminClient(coordinator.url, readFileSync(join(dataDir, 'admin-token'), 'utf8').trim());
    const all = layers.flat();
    const byPath = new Map(all.map((d) => [d.path, d]));
    const closure = (top: MadeDerivation) => {
      const seen = new Set<string>();
      const visit = (p: string) => {
        if (seen.has(p)) return;
        seen.add(p);
        for (const input of byPath.get(p)!.drv.inputDrvs.keys()) visit(input);
      };
      visit(top.path);
      return [...seen].map((p) => ({ path: p, text: Buffer.from(byPath.get(p)!.text) }));
    };
    const expected = withUpstream ? all.length - lower.flat().length : all.length;
    const lowestKiln = new Set((withUpstream ? layers[LAYERS / 2]! : layers[0]!).map((d) => d.path));
    const requestsBefore = upstream?.requests() ?? 0;
    // The top layer only, each with the texts of its closure.
    const requests = layers[LAYERS - 1]!.map((d) => ({ derivationPath: d.path, derivations: closure(d), priority: 0 }));
    const textsSent = requests.reduce((n, r) => n + r.derivations.length, 0);
    const started = performance.now();
    await admin.submitBuilds({ builds: requests });
    const submitMs = performance.now() - started;
    let lowestReadyMs = NaN;
    let allBuildsMs = NaN;
    let builds = 0;
    let lastChange = performance.now();
    let lastSeen = '';
    for (;;) {
      const listed = [];
      let pageToken = '';
      do {
        const page = await admin.listBuilds({ pageSize: 1000, pageToken });
        listed.push(...page.builds);
        pageToken = page.nextPageToken;
      } while (pageToken);
      const now = performance.now();
      builds = listed.length;
      if (Number.isNaN(allBuildsMs) && builds >= expected) allBuildsMs = now - started;
      if (Number.isNaN(lowestReadyMs)) {
        const lowest = listed.filter((b) => lowestKiln.has(b.derivationPath));
        if (lowest.length === lowestKiln.size && lowest.every((b) => b.waitingInputs === 0)) lowestReadyMs = now - started;
      }
      const seen = `${builds}/${upstream?.requests() ?? 0}`;
      if (seen !== lastSeen) {
        lastSeen = seen;
        lastChange = now;
      }
      const settled = !Number.isNaN(lowestReadyMs) && builds >= expected && now - lastChange > SETTLE_MS;
      if (settled || now - started > RUN_LIMIT_MS) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const result: UpstreamRun = { engine, upstream: withUpstream, derivations: all.length, builds, expected, narinfoRequests: (upstream?.requests() ?? 0) - requestsBefore, narinfoHits: upstream?.hits() ?? 0, distinctPaths: upstream?.distinct() ?? 0, submitMs, lowestReadyMs, allBuildsMs };
    const perBuild = builds > 0 ? (result.narinfoRequests / builds).toFixed(2) : '-';
    console.log(
      `${engine}, ${withUpstream ? 'upstream holds the lower half' : 'no upstream'}: ${builds} builds made of ${all.length} derivations (expected ${expected}); ` +
        `${result.narinfoRequests} narinfo requests (${result.narinfoHits} hits, ${result.distinctPaths} distinct paths; ${perBuild} per build made); SubmitBuilds (${requests.length} builds, ${textsSent} texts) ${submitMs.toFixed(0)} ms; ` +
        `lowest kiln-built layer ready after ${lowestReadyMs.toFixed(0)} ms; all builds made after ${allBuildsMs.toFixed(0)} ms`,
    );
    return result;
  } finally {
    await coordinator.stop();
    await upstream?.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export async function benchUpstream(opts: { engines?: UpstreamEngine[] } = {}): Promise<BenchUpstreamReport> {
  const layers = makeDag();
  console.log(`DAG: ${LAYERS} layers of ${WIDTH} derivations, each on 1–3 of the layer below; the top layer submitted`);
  const runs: UpstreamRun[] = [];
  const engines = opts.engines ?? ['pglite', 'postgres'];
  if (engines.includes('pglite')) runs.push(await run(layers, false, 'pglite'), await run(layers, true, 'pglite'));
  if (engines.includes('postgres')) {
    const server = await startPostgres();
    try {
      for (const withUpstream of [false, true]) {
        const name = `kiln_bench_upstream_${withUpstream ? 'on' : 'off'}`;
        await dropDatabase(server.url, name);
        const url = await createDatabase(server.url, name);
        try {
          runs.push(await run(layers, withUpstream, 'postgres', url));
        } finally {
          await dropDatabase(server.url, name);
        }
      }
    } finally {
      await server.stop();
    }
  }
  return { runs };
}
