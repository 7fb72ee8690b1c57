// Reproducibility checks end to end, for any builder, on both databases: three real
// `kiln agent run` processes (a and c carry cpu=x, b carries cpu=y), builds submitted and
// checked through the CLI. A deterministic derivation is reproducible; one that writes
// $RANDOM into one of its two files is unreproducible, naming that file and that output,
// with every agent's NAR at its own URL and the cache serving the first success as before.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReproducibilityState, type Reproducibility } from '../../gen/kiln/v1/admin_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { sql } from 'drizzle-orm';
import { rowsOf } from '../../src/db/rows.js';
import { encodeBase32 } from '../../src/store/base32.js';
import { startAgentProcess, type AgentProcess, type BuilderName } from './agent-process.js';
import { agentLogs } from './build-loop.js';
import { cliEnv, runCli, startTestCoordinator, type TestCoordinator } from './coordinator.js';
import { DATABASE_KINDS } from './databases.js';
import { SYSTEM } from './derivations.js';
import { instantiate } from './nix.js';
import { parsePrometheusText, sampleValue } from './prometheus-text.js';
import { checkServedNar } from './served-nar.js';
import { waitForBuilds } from './wait.js';

/** A derivation run by bash (for $RANDOM), outputs out and dev. */
function bashDrv(name: string, script: string): string {
  return `derivation { name = "${name}"; system = "${SYSTEM}"; builder = "/bin/bash"; PATH = "/usr/bin:/bin"; outputs = [ "out" "dev" ]; args = [ "-c" ${JSON.stringify(script)} ]; }`;
}

interface Farm {
  t: TestCoordinator;
  root: string;
  agents: AgentProcess[];
  /** Agent ids by name (a, b, c). */
  ids: Record<string, string>;
}

/** The suite for one builder, on each database. */
export function reproducibilitySuite(builder: BuilderName): void {
  describe.each(DATABASE_KINDS)(`reproducibility checks with the ${builder} builder (%s)`, (kind) => {
    let farm: Farm;
    /** The unreproducible build, and the by-tag one (kept by gc), for the gc test. */
    const made: { unreproducible?: string; byTag?: string } = {};
    beforeAll(async () => {
      // gc keeps only builds tagged cpu=x (the last test collects the others).
      const t = await startTestCoordinator(kind, { submitMissingInputs: false, retention: { lastSuccessfulPerName: 0, tags: [{ key: 'cpu', value: 'x' }] } });
      farm = { t, root: mkdtempSync(join(tmpdir(), 'kiln-repro-')), agents: [], ids: {} };
      for (const [name, cpu] of [['a', 'x'], ['b', 'y'], ['c', 'x']] as const) {
        const { agent } = await t.admin.createAgent({ name: `agent-${name}`, tags: [{ key: 'cpu', value: cpu }] });
        const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
        farm.ids[name] = agent!.id;
        farm.agents.push(
          startAgentProcess({ coordinatorUrl: t.coordinator.url, id: agent!.id, password, store: join(farm.root, name), builder, extraArgs: ['--tag', `cpu=${cpu}`] }),
        );
      }
      // A coordinator on PGlite and three agents take long to start on a busy machine.
    }, 180_000);
    afterAll(async () => {
      const started = farm as Farm | undefined; // unset when beforeAll failed
      if (!started) return;
      await Promise.all(started.agents.map((a) => a.stop()));
      await started.t.stop();
      rmSync(started.root, { recursive: true, force: true });
    });

    /** Waits until the build's check is decided; returns it as GetBuild gives it. */
    async function decided(id: string): Promise<Reproducibility> {
      const { t } = farm;
      const state = async () => (await t.admin.getBuild({ id })).reproducibility?.state;
      await waitForBuilds(
        t.coordinator,
        async () => ![undefined, ReproducibilityState.PENDING].includes(await state()),
        120_000,
        async () => `check of ${id}: ${JSON.stringify((await t.admin.getBuild({ id })).reproducibility?.outputs.map((o) => o.results.length))}\n${agentLogs(farm.agents)}`,
      );
      return (await t.admin.getBuild({ id })).reproducibility!;
    }

    async function submitCli(drv: string, ...flags: string[]): Promise<string> {
      const res = await runCli(['build', 'submit', drv, '--json', ...flags], cliEnv(farm.t));
      expect(res.stderr).toBe('');
      expect(res.code).toBe(0);
      return (JSON.parse(res.stdout) as { build: { id: string } }[])[0]!.build.id;
    }

    test('a deterministic derivation built on two distinct agents is reproducible; kiln build show says so as text and JSON', async () => {
      const nonce = randomUUID().slice(0, 8);
      const [drv] = instantiate(bashDrv(`same-${nonce}`, `mkdir $out; echo ${nonce} > $out/a; echo fixed > $out/b; echo dev > $dev`));
      const id = await submitCli(drv!, '--check-reproducible', '2');
      const check = await decided(id);
      expect(check.state).toBe(ReproducibilityState.REPRODUCIBLE);
      expect(check.agents).toBe(2);
      expect(check.checkBuildIds).toHaveLength(1);
      for (const output of check.outputs) {
        expect(output.reproducible).toBe(true);
        expect(output.results).toHaveLength(2);
        expect(new Set(output.results.map((r) => r.agentId)).size).toBe(2);
        expect(new Set(output.results.map((r) => r.narHash)).size).toBe(1);
        expect(output.differences).toEqual([]);
      }
      expect(check.outputs.map((o) => o.name)).toEqual(['dev', 'out']);

      const text = await runCli(['build', 'show', id], cliEnv(farm.t));
      expect(text.code).toBe(0);
      expect(text.stdout).toContain('reproducibility reproducible (2 agents)');
      expect(text.stdout).toMatch(/output out \S+: same/);
      const json = JSON.parse((await runCli(['build', 'show', id, '--json'], cliEnv(farm.t))).stdout) as { id: string; reproducibility: { state: string; outputs: { results: { agentId: string }[] }[] } };
      expect(json.id).toBe(id);
      expect(json.reproducibility.state).toBe('REPRODUCIBILITY_STATE_REPRODUCIBLE');
      // The check build is a build of its own, succeeded, pointing at no other outputs.
      const { build: checkBuild } = await farm.t.admin.getBuild({ id: check.checkBuildIds[0]! });
      expect(checkBuild!.state).toBe(BuildState.SUCCEEDED);
      expect(checkBuild!.checkOfBuildId).toBe(id);
      // The farm's gauge counts it.
      const metrics = await (await fetch(`${farm.t.coordinator.url}/metrics`)).text();
      expect(sampleValue(parsePrometheusText(metrics), 'kiln_reproducibility_checks', { state: 'reproducible' })).toBeGreaterThanOrEqual(1);
    }, 180_000);

    test('one that writes $RANDOM into one of two files is unreproducible, naming that file and that output; both NARs are at their URLs and the cache serves the first', async () => {
      const { t } = farm;
      const nonce = randomUUID().slice(0, 8);
      const [drv] = instantiate(bashDrv(`random-${nonce}`, `mkdir $out; echo ${nonce} > $out/stable; echo "$RANDOM$RANDOM-$(date +%s%N)" > $out/noise; echo dev > $dev`));
      const id = await submitCli(drv!, '--check-reproducible', '2');
      made.unreproducible = id;
      const check = await decided(id);
      expect(check.state).toBe(ReproducibilityState.UNREPRODUCIBLE);
      const out = check.outputs.find((o) => o.name === 'out')!;
      const dev = check.outputs.find((o) => o.name === 'dev')!;
      expect(dev.reproducible).toBe(true);
      expect(out.reproducible).toBe(false);
      expect(out.differencesError).toBe('');
      expect(out.differences.map((d) => d.path)).toEqual(['noise']);
      const [first, second] = out.differences[0]!.versions;
      expect([first!.position, second!.position]).toEqual([1, 2]);
      expect(first!.type).toBe('regular');
      expect(first!.sha256).not.toBe(second!.sha256);
      // A small text file: where it first differs, and its text from there.
      expect(first!.firstDifference).toBeGreaterThanOrEqual(0n);
      expect(first!.excerpt.length).toBeGreaterThan(0);
      expect(first!.excerpt).not.toBe(second!.excerpt);

      // Both agents' NARs, at their own URLs, hash to what the check says.
      const narHashOf = async (url: string) => {
        const res = await fetch(`${t.coordinator.url}${url}`);
        expect(res.status).toBe(200);
        return `sha256:${encodeBase32(createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest())}`;
      };
      for (const r of out.results) expect(await narHashOf(r.narUrl)).toBe(r.narHash);
      expect(out.results[0]!.narHash).not.toBe(out.results[1]!.narHash);
      expect((await fetch(`${t.coordinator.url}/qa/${id}/3/out.nar`)).status).toBe(404);
      // The cache still serves the first success's output, signed as before.
      const served = await checkServedNar(t.coordinator.url, out.path);
      expect(served.narHash).toBe(out.results[0]!.narHash);

      // Hooks get the verdict as an event, naming the output.
      const { events } = await t.admin.listEvents({ buildId: id, types: ['build-unreproducible'] });
      expect(events).toHaveLength(1);
      const payload = JSON.parse(events[0]!.payloadJson) as { state: string; outputs: { name: string; reproducible: boolean }[] };
      expect(payload.state).toBe('unreproducible');
      expect(payload.outputs.filter((o) => !o.reproducible).map((o) => o.name)).toEqual(['out']);
      const text = (await runCli(['build', 'show', id], cliEnv(t))).stdout;
      expect(text).toContain('reproducibility unreproducible');
      expect(text).toMatch(/output out \S+: DIFFERS/);
      expect(text).toContain('differs: noise');
    }, 180_000);

    test('kiln build check asks for a check of a build that succeeded already', async () => {
      const { t } = farm;
      const nonce = randomUUID().slice(0, 8);
      const [drv] = instantiate(bashDrv(`later-${nonce}`, `mkdir $out; echo ${nonce} > $out/a; echo dev > $dev`));
      const id = await submitCli(drv!);
      await waitForBuilds(t.coordinator, async () => (await t.admin.getBuild({ id })).build!.state === BuildState.SUCCEEDED, 120_000, async () => agentLogs(farm.agents));
      expect((await t.admin.getBuild({ id })).reproducibility).toBeUndefined();

      const asked = await runCli(['build', 'check', id, '3'], cliEnv(t));
      expect(asked.stderr).toBe('');
      expect(asked.stdout).toContain('reproducibility pending (3 agents)');
      const check = await decided(id);
      expect(check.state).toBe(ReproducibilityState.REPRODUCIBLE);
      // Three agents in all: every agent of the farm built it once.
      for (const output of check.outputs) expect(new Set(output.results.map((r) => r.agentId))).toEqual(new Set(Object.values(farm.ids)));

      // Refusals a person can act on.
      const tooFew = await runCli(['build', 'check', id, '1'], cliEnv(t));
      expect(tooFew.code).not.toBe(0);
      expect(tooFew.stderr).toContain('2 or more agents');
      const byOther = await runCli(['build', 'check', id, '4', '--by', 'cpu'], cliEnv(t));
      expect(byOther.code).not.toBe(0);
      expect(byOther.stderr).toContain('checked by agent already');
      const unknown = await runCli(['build', 'check', randomUUID(), '2'], cliEnv(t));
      expect(unknown.code).not.toBe(0);
      expect(unknown.stderr).toContain('no build with id');
    }, 240_000);

    test('--check-reproducible-by cpu builds it on agents that differ in their cpu tag', async () => {
      const { t } = farm;
      const nonce = randomUUID().slice(0, 8);
      const [drv] = instantiate(bashDrv(`bytag-${nonce}`, `mkdir $out; echo ${nonce} > $out/a; echo dev > $dev`));
      // The build itself goes to a cpu=x agent (a or c); its check may only go to b.
      const id = await submitCli(drv!, '--tag', 'cpu=x', '--check-reproducible', '2', '--check-reproducible-by', 'cpu');
      made.byTag = id;
      const check = await decided(id);
      expect(check.state).toBe(ReproducibilityState.REPRODUCIBLE);
      expect(check.byTag).toBe('cpu');
      for (const output of check.outputs) {
        expect(output.results.map((r) => r.tagValue)).toEqual(['x', 'y']);
        expect(output.results[1]!.agentId).toBe(farm.ids.b);
      }
      const text = (await runCli(['build', 'show', id], cliEnv(t))).stdout;
      expect(text).toContain('(2 agents differing in tag cpu)');
      expect(text).toContain('cpu=y');
    }, 180_000);

    test('kiln cache gc removes a check\'s NARs with the output they check, and keeps those of a kept build', async () => {
      const { t } = farm;
      const files = async (id: string) =>
        rowsOf<{ file_name: string }>(await t.coordinator.database.db.execute(sql`select file_name from check_outputs where build_id = ${id}::uuid`)).map((r) => r.file_name);
      const narFile = (name: string) => join(t.dataDir, 'nars', 'nar', name);
      const kept = await files(made.byTag!);
      // Its two outs (they differ); its dev's NAR ("dev\n", no name) is the kept build's too.
      const gone = (await files(made.unreproducible!)).filter((name) => !kept.includes(name));
      expect(new Set(gone).size).toBe(2);
      for (const name of [...gone, ...kept]) expect(existsSync(narFile(name))).toBe(true);
      const before = (await t.admin.getBuild({ id: made.unreproducible! })).reproducibility!;
      const url = (r: Reproducibility, output: string, position: number) => `${t.coordinator.url}${r.outputs.find((o) => o.name === output)!.results[position - 1]!.narUrl}`;
      expect((await fetch(url(before, 'out', 2))).status).toBe(200);

      const gc = await runCli(['cache', 'gc'], cliEnv(t));
      expect(gc.stderr).toBe('');
      expect(gc.code).toBe(0);
      for (const name of gone) expect(existsSync(narFile(name))).toBe(false);
      for (const name of kept) expect(existsSync(narFile(name))).toBe(true);
      expect(await files(made.unreproducible!)).toEqual([]);
      expect((await fetch(url(before, 'out', 2))).status).toBe(404);
      // The verdict stays on the build; its results went with the output.
      const after = (await t.admin.getBuild({ id: made.unreproducible! })).reproducibility!;
      expect(after.state).toBe(ReproducibilityState.UNREPRODUCIBLE);
      expect(after.outputs).toEqual([]);
      const keptCheck = (await t.admin.getBuild({ id: made.byTag! })).reproducibility!;
      expect((await fetch(url(keptCheck, 'out', 2))).status).toBe(200);
    }, 120_000);
  });
}
