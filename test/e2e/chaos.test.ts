// Chaos, sized for CI: a DAG of real derivations (some outputs a few MiB, uploaded on
// their own) built by three `kiln agent run` processes with the nix builder, each given
// both replicas of a coordinator on one PostgreSQL, while: one replica is SIGKILLed and
// kept down 20 s (the agents go on through the other), both are SIGKILLed and kept down
// 20 s (the coordinator is gone), an agent is SIGKILLed mid-upload,
// PostgreSQL is stopped for 15 s, and both replicas are SIGKILLed for 20 s again. At the
// end every build succeeded once, every output's NAR is whole, and every success reached
// the hook.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { createAdminClient } from '../../src/client/admin-client.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { agentLogs } from '../helpers/build-loop.js';
import { startCoordinatorProcess, type CoordinatorProcess } from '../helpers/coordinator-process.js';
import { closureOf, shDrv } from '../helpers/derivations.js';
import { instantiate } from '../helpers/nix.js';
import { createDatabase, freePort, startPostgres, type PostgresServer } from '../helpers/postgres-server.js';
import { checkServedNar } from '../helpers/served-nar.js';
import { waitUntil } from '../helpers/wait.js';

const BUILDS = 60;
/** Every LARGE_EVERY-th derivation writes LARGE_BYTES: far past the 64 KiB inline limit. */
const LARGE_EVERY = 5;
const LARGE_BYTES = 3 << 20;
const AGENTS = 3;
/** How long each coordinator outage lasts (the fault itself, a timer). */
const OUTAGE_MS = 20_000;
/** The agents' retry budget: longer than any outage here. */
const RETRY_FOR_S = 240;
/** How long PostgreSQL is stopped. */
const PG_OUTAGE_MS = 15_000;

describe('chaos: replica, coordinator and agent faults during a DAG of nix builds', () => {
  let pg: PostgresServer;
  let databaseUrl: string;
  let dir: string;
  const ports: number[] = [];
  const replicas: (CoordinatorProcess | undefined)[] = [undefined, undefined];
  const agents: AgentProcess[] = [];
  let sql: postgres.Sql;
  let hookFile: string;
  let config: string;

  const startReplica = async (i: number) => {
    const replica = await startCoordinatorProcess({ dataDir: join(dir, 'data'), databaseUrl, port: ports[i], args: ['--config', config, '--lease', '120'] });
    // A replica that ends by itself is a coordinator bug: say what it said last.
    replica.child.once('exit', (code, signal) => {
      if (signal !== 'SIGKILL') process.stderr.write(`chaos: replica ${i} exited by itself (${code ?? signal}):\n${replica.stderr().slice(-6000)}\n`);
    });
    replicas[i] = replica;
  };
  const killReplica = async (i: number) => {
    await replicas[i]?.stop('SIGKILL');
    replicas[i] = undefined;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-chaos-'));
    pg = await startPostgres();
    databaseUrl = await createDatabase(pg.url, 'kiln_chaos');
    sql = postgres(databaseUrl, { max: 1, onnotice: () => {}, idle_timeout: 1 });
    hookFile = join(dir, 'successes.jsonl');
    writeFileSync(hookFile, '');
    config = join(dir, 'kiln.json');
    writeFileSync(config, JSON.stringify({ hooks: [{ name: 'recorder', events: ['build-success'], concurrency: 1, command: ['/bin/sh', '-c', `cat >> ${hookFile}; echo >> ${hookFile}`] }] }));
    ports.push(await freePort(), await freePort());
    // The first creates the admin token and signing keys in the shared data directory.
    await startReplica(0);
    await startReplica(1);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.kill()));
    await Promise.all(replicas.map((r) => r?.stop('SIGKILL')));
    await sql?.end({ timeout: 1 }).catch(() => undefined);
    await pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('every build succeeds exactly once, every NAR is whole, every success reaches the hook', async () => {
    const started = Date.now();
    const admin = createAdminClient(replicas[0]!.url, readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim());
    const urls = ports.map((p) => `http://127.0.0.1:${p}`);
    const agentArgs = [...urls.slice(1).flatMap((u) => ['--coordinator', u]), '--retry-for', String(RETRY_FOR_S)];
    const credentials: { id: string; password: string }[] = [];
    const startAgent = (i: number) =>
      startAgentProcess({ coordinatorUrl: urls[0]!, ...credentials[i]!, store: join(dir, `agent-${i}`), maxParallel: 2, extraArgs: agentArgs });
    for (let i = 0; i < AGENTS; i++) {
      const { agent } = await admin.createAgent({ name: `chaos-${i}` });
      const { password } = await admin.createAgentPassword({ agentId: agent!.id });
      credentials.push({ id: agent!.id, password });
    }

    // A layered DAG: each derivation uses up to three before it; every fifth writes
    // LARGE_BYTES of pseudo-random bytes, the same on every build (a reproducible build).
    const nonce = randomUUID().slice(0, 8);
    let seed = 11;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
    const lets: string[] = [];
    for (let i = 0; i < BUILDS; i++) {
      const inputs = i === 0 ? [] : [...new Set([next() % i, next() % i, next() % i])].slice(0, 1 + (next() % 3));
      const large = i % LARGE_EVERY === LARGE_EVERY - 1;
      const body = large
        ? `head -c ${LARGE_BYTES} /dev/zero | openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass pass:d${i}-${nonce} > $out`
        : `echo d${i}-${nonce} > $out`;
      const deps = inputs.map((j) => `head -c 64 \${d${j}} >> $out`).join('; ');
      lets.push(`d${i} = ${shDrv(`chaos-${i}-${nonce}`, deps ? `${body}; ${deps}` : body)};`);
    }
    const drvs = instantiate(`let ${lets.join('\n')} in [ ${Array.from({ length: BUILDS }, (_, i) => `d${i}`).join(' ')} ]`);

    const ids: string[] = [];
    for (const drv of drvs) ids.push((await admin.submitBuild({ derivationPath: drv, derivations: closureOf(drv) })).build!.id);
    // The agents start once everything is submitted: the faults below come at points of
    // the DAG's progress, however fast this machine submits.
    for (let i = 0; i < AGENTS; i++) agents.push(startAgent(i));

    const succeeded = async () => {
      try {
        const [row] = await sql<{ n: number }[]>`select count(*)::int as n from builds where state = 'succeeded'`;
        return row!.n;
      } catch {
        return -1; // PostgreSQL is down
      }
    };
    const states = async () => {
      const counts = JSON.stringify(await sql`select state, count(*)::int from builds group by state`.catch((e: Error) => e.message));
      const failed = await sql<{ message: string }[]>`select build_id, attempt, outcome, message from build_attempts where outcome <> 'success'`.catch(() => []);
      return `${counts}\nattempts that did not succeed:\n${failed.map((f) => JSON.stringify(f).slice(0, 1500)).join('\n')}`;
    };
    const atLeast = (n: number, what: string) =>
      waitUntil(async () => (await succeeded()) >= Math.min(n, BUILDS), 240_000, async () => `${what}: ${await states()}\n${agentLogs(agents)}`, 500);
    const outage = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const faults: string[] = [];
    const note = async (what: string) => {
      faults.push(`${((Date.now() - started) / 1000).toFixed(0)} s, ${await succeeded()} done: ${what}`);
      process.stderr.write(`chaos: ${faults.at(-1)}\n`);
    };

    // 1. One replica down for OUTAGE_MS: the agents go on through the other.
    await atLeast(5, 'builds before the first fault');
    await killReplica(0);
    await note('replica 0 SIGKILLed');
    const before = await succeeded();
    const kept = outage(OUTAGE_MS);
    await waitUntil(async () => (await succeeded()) >= before + 3, 120_000, async () => `builds while replica 0 is down: ${await states()}\n${agentLogs(agents)}`, 500);
    await note('3 builds succeeded through replica 1 alone');
    await kept;
    await startReplica(0);
    await note('replica 0 back');

    // 2. The whole coordinator down (both replicas), for OUTAGE_MS.
    await atLeast(before + 6, 'builds before the second fault');
    await Promise.all([killReplica(0), killReplica(1)]);
    await note('both replicas SIGKILLed');
    await outage(OUTAGE_MS);
    await Promise.all([startReplica(0), startReplica(1)]);
    await note('both replicas back');

    // 3. An agent killed mid-upload (it said it started one, and the coordinator holds
    // part of it in staging: a `.part` file is there only between an upload's second
    // frame and its commit), then started again.
    // An agent is killed the moment it logs that an upload of a separately uploaded output
    // began (a 3 MiB NAR takes far longer to send than the 5 ms between looks). Waiting
    // for a growing staged file as well missed every upload on a quiet machine: they were
    // over before the next look, or went to the other replica's staging.
    const victim = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        clearInterval(check);
        reject(new Error(`no agent began an upload within 120 s:\n${agentLogs(agents)}`));
      }, 120_000);
      const seen = agents.map((a) => a.output().length);
      const check = setInterval(() => {
        const i = agents.findIndex((a, k) => a.output().slice(seen[k]).includes('"msg":"uploading output"'));
        if (i < 0) return;
        clearInterval(check);
        clearTimeout(timer);
        resolve(i);
      }, 5);
    });
    await agents[victim]!.kill();
    await note(`agent ${victim} SIGKILLed mid-upload`);
    agents[victim] = startAgent(victim);

    // 4. PostgreSQL stopped for 15 s under both replicas: they and the agents wait for it.
    await atLeast(Math.floor(BUILDS * 0.45), 'builds before the PostgreSQL stop');
    await pg.halt();
    await note('PostgreSQL stopped');
    await outage(PG_OUTAGE_MS);
    await pg.resume();
    await note('PostgreSQL back');

    // 5. The whole coordinator down again.
    await atLeast(Math.floor(BUILDS * 0.7), 'builds before the last fault');
    await Promise.all([killReplica(0), killReplica(1)]);
    await note('both replicas SIGKILLed');
    await outage(OUTAGE_MS);
    await Promise.all([startReplica(0), startReplica(1)]);
    await note('both replicas back');

    await atLeast(BUILDS, 'every build');
    await note('all succeeded');
    console.log(`chaos (${BUILDS} builds, ${AGENTS} agents):\n${faults.join('\n')}`);

    // Exactly once: every build succeeded, with one succeeded attempt each.
    const rows = await sql<{ id: string; state: string; successes: number; attempts: string }[]>`
      select b.id, b.state, count(*) filter (where a.outcome = 'success')::int as successes,
             string_agg(coalesce(a.outcome, 'running'), ',' order by a.attempt) as attempts
      from builds b left join build_attempts a on a.build_id = b.id group by b.id, b.state`;
    expect(rows.length).toBe(BUILDS);
    expect(rows.filter((r) => r.state !== 'succeeded' || r.successes !== 1)).toEqual([]);
    const others = await sql<{ outcome: string; message: string }[]>`select outcome, message from build_attempts where outcome <> 'success'`;
    console.log(`attempts that did not succeed (retried): ${others.map((o) => `\n${o.outcome}: ${o.message.slice(-400)}`).join('')}`);

    // Every output's NAR decompresses to its narinfo's NarHash.
    const outputs = await sql<{ path: string }[]>`select path from store_paths where build_id is not null`;
    expect(outputs.length).toBe(BUILDS);
    const large = [];
    for (const { path } of outputs) {
      const { narSize } = await checkServedNar(urls[0]!, path);
      if (narSize > LARGE_BYTES) large.push(path);
    }
    expect(large.length).toBe(Math.floor(BUILDS / LARGE_EVERY));
    expect(existsSync(hookFile)).toBe(true);

    // Every build-success event reached the command hook.
    const recorded = () =>
      new Set(
        readFileSync(hookFile, 'utf8')
          .split('\n')
          .filter((l) => l.trim().startsWith('{'))
          .map((l) => (JSON.parse(l) as { buildId: string }).buildId),
      );
    await waitUntil(() => ids.every((id) => recorded().has(id)), 60_000, () => `hook saw ${recorded().size} of ${BUILDS} successes`, 250);
  }, 420_000);
});
