// Three coordinator processes on one PostgreSQL, agents spread across them, a DAG of
// two thousand builds submitted through all three: every build is allocated exactly
// once and succeeds, and each replica hands out work that the others made ready
// (wake-ups travel by LISTEN/NOTIFY, claims by FOR UPDATE SKIP LOCKED).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { SimulatedAgent } from '../helpers/simulated-agent.js';
import { createAdminClient, type AdminClient } from '../../sdk/typescript/src/index.js';
import { makeDerivation, type MadeDerivation } from '../../src/store/make-derivation.js';
import type { Derivation } from '../../src/store/derivation.js';
import { startCoordinatorProcess, type CoordinatorProcess } from '../helpers/coordinator-process.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';

const BUILDS = 2000;
const AGENTS_PER_REPLICA = 3;
const SYSTEM = 'x86_64-linux';

describe('three coordinator replicas on one PostgreSQL', () => {
  let database: TestDatabase;
  let dataDir: string;
  const replicas: CoordinatorProcess[] = [];
  const agents: SimulatedAgent[] = [];
  let admins: AdminClient[];

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    // The replicas share one data directory (as on a shared filesystem): admin token,
    // signing keys and NARs. The first creates the token and keys; the others read them.
    dataDir = mkdtempSync(join(tmpdir(), 'kiln-replicas-'));
    // Every replica runs the same hook; each event must be handled by one of them only.
    const config = join(dataDir, 'kiln.json');
    writeFileSync(config, JSON.stringify({ hooks: [{ name: 'recorder', events: ['build-success'], concurrency: 4, command: ['/bin/sh', '-c', `cat >> ${join(dataDir, 'successes.jsonl')}`] }] }));
    writeFileSync(join(dataDir, 'successes.jsonl'), '');
    const start = () => startCoordinatorProcess({ dataDir, databaseUrl: database.url, args: ['--config', config] });
    replicas.push(await start());
    replicas.push(...(await Promise.all([1, 2].map(start))));
    const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
    admins = replicas.map((r) => createAdminClient(r.url, token));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all(replicas.map((r) => r.stop()));
    await database?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  test('every build is allocated exactly once and all succeed', async () => {
    // A layered DAG: each derivation uses up to three of the ones before it.
    const run = randomUUID().slice(0, 8);
    const known = new Map<string, Derivation>();
    const made: MadeDerivation[] = [];
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
    for (let i = 0; i < BUILDS; i++) {
      const inputs = i === 0 ? [] : [...new Set([next() % i, next() % i, next() % i])].slice(0, 1 + (next() % 3));
      const d = makeDerivation(
        { name: `r${i}-${run}`, system: SYSTEM, builder: '/bin/sh', inputDrvs: new Map(inputs.map((j) => [made[j]!.path, ['out']])) },
        '/nix/store',
        known,
      );
      known.set(d.path, d.drv);
      made.push(d);
    }

    // Resolves when the replicas have acknowledged every build's success.
    // Only the submitted builds count (ids is filled as they are submitted).
    const acknowledged = new Set<string>();
    const ids: string[] = [];
    let allDone!: () => void;
    const done = new Promise<void>((resolve) => (allDone = resolve));
    const check = () => {
      if (ids.length === BUILDS && ids.every((id) => acknowledged.has(id))) allDone();
    };
    const onFinished = (buildId: string) => {
      acknowledged.add(buildId);
      check();
    };
    for (let r = 0; r < replicas.length; r++) {
      for (let a = 0; a < AGENTS_PER_REPLICA; a++) {
        const { agent } = await admins[0]!.createAgent({ name: `replica-${r}-agent-${a}` });
        const { password } = await admins[0]!.createAgentPassword({ agentId: agent!.id });
        const sim = new SimulatedAgent({ url: replicas[r]!.url, agentId: agent!.id, password, systems: [SYSTEM], slots: 4, onFinished });
        await sim.start();
        agents.push(sim);
      }
    }

    // Submitted through all three replicas, level by level of the DAG so that a build's
    // inputs are stored before it (each submission carries only its own text), many at once.
    const level: number[] = [];
    made.forEach((d, i) => {
      const inputs = [...d.drv.inputDrvs.keys()].map((p) => made.findIndex((m) => m.path === p));
      level[i] = inputs.length === 0 ? 0 : 1 + Math.max(...inputs.map((j) => level[j]!));
    });
    for (let l = 0; l <= Math.max(...level); l++) {
      const todo = made.map((_, i) => i).filter((i) => level[i] === l);
      await Promise.all(
        Array.from({ length: 12 }, async (_, worker) => {
          for (let k = worker; k < todo.length; k += 12) {
            const i = todo[k]!;
            const { build } = await admins[i % admins.length]!.submitBuild({
              derivationPath: made[i]!.path,
              derivations: [{ path: made[i]!.path, text: Buffer.from(made[i]!.text) }],
            });
            ids.push(build!.id);
          }
        }),
      );
    }
    check(); // every build may have finished before the last submission returned
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      done,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`only ${ids.filter((id) => acknowledged.has(id)).length} of ${BUILDS} builds finished`)), 240_000);
      }),
    ]).finally(() => clearTimeout(timer));

    const sql = postgres(database.url!, { max: 1, onnotice: () => {} });
    try {
      const [states] = await sql<{ succeeded: number; total: number }[]>`
        select count(*) filter (where state = 'succeeded')::int as succeeded, count(*)::int as total from builds`;
      expect(states).toEqual({ succeeded: BUILDS, total: BUILDS });
      // Exactly once: one attempt per build, and no build reached two agents.
      const attempts = await sql<{ n: number }[]>`select count(*)::int as n from build_attempts group by build_id having count(*) <> 1`;
      expect(attempts).toEqual([]);
    } finally {
      await sql.end();
    }
    const all = agents.flatMap((a) => a.assigned);
    expect(all.length).toBe(BUILDS);
    expect(new Set(all).size).toBe(BUILDS);
    expect(new Set(all)).toEqual(new Set(ids));
    // Every agent stayed within its slots, and every replica handed out work.
    for (const a of agents) expect(a.maxHolding).toBeLessThanOrEqual(4);
    // Each success event went to the hook once, on one replica (row locks on deliveries).
    const successes = join(dataDir, 'successes.jsonl');
    const recorded = () => readFileSync(successes, 'utf8').split('\n').slice(0, -1).map((l) => (JSON.parse(l) as { buildId: string }).buildId);
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (recorded().length < BUILDS) return;
        clearTimeout(timer);
        watcher.close();
        resolve();
      };
      const watcher = watch(successes, check);
      const timer = setTimeout(() => {
        watcher.close();
        reject(new Error(`the hook recorded ${recorded().length} of ${BUILDS} successes`));
      }, 120_000);
      check();
    });
    expect(recorded().length).toBe(BUILDS);
    expect(new Set(recorded())).toEqual(new Set(ids));
    for (let r = 0; r < replicas.length; r++) {
      const handed = agents.slice(r * AGENTS_PER_REPLICA, (r + 1) * AGENTS_PER_REPLICA).reduce((n, a) => n + a.assigned.length, 0);
      expect(handed).toBeGreaterThan(0);
    }
  }, 400_000);
});
