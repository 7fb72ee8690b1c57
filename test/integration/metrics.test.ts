// /metrics through the real server, read with a strict Prometheus text-format parser:
// the values are what the test did (N builds submitted → N; one success and one failure
// reported → those counters; the queue and the agents as they stand), on both databases.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inArray, isNull, count } from 'drizzle-orm';
import { BuildResult } from '../../gen/kiln/v1/agent_pb.js';
import { BuildState } from '../../gen/kiln/v1/types_pb.js';
import { events, hookDeliveries, storePaths } from '../../src/db/schema.js';
import { connectTestAgent, type TestAgentStream } from '../helpers/agent-stream.js';
import { REPO_ROOT, startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { closureOf, shDrv, SYSTEM } from '../helpers/derivations.js';
import { instantiate } from '../helpers/nix.js';
import { parsePrometheusText, sampleValue, type MetricFamily } from '../helpers/prometheus-text.js';
import { uploadTinyOutputs } from '../helpers/tiny-outputs.js';
import { waitForBuilds } from '../helpers/wait.js';

async function scrapeText(t: TestCoordinator): Promise<string> {
  const res = await fetch(`${t.coordinator.url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4');
  return res.text();
}

async function scrape(t: TestCoordinator): Promise<Map<string, MetricFamily>> {
  return parsePrometheusText(await scrapeText(t));
}

/** `promtool check metrics` (Debian's prometheus package) on a page: its complaints, if any. */
function promtool(page: string): { status: number | null; complaints: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: page, encoding: 'utf8' });
  if (r.error) throw r.error;
  return { status: r.status, complaints: `${r.stdout}${r.stderr}`.trim() };
}

describe.each(DATABASE_KINDS)('/metrics on %s', (kind) => {
  let t: TestCoordinator;
  let agent: TestAgentStream | undefined;
  beforeAll(async () => {
    t = await startTestCoordinator(kind, { submitMissingInputs: false });
  });
  afterAll(async () => {
    await agent?.close();
    await t?.stop();
  });

  test('names follow Prometheus conventions and every family says what it is', async () => {
    const families = await scrape(t);
    const kiln = [...families.values()].filter((f) => f.name.startsWith('kiln_'));
    expect(kiln.length).toBeGreaterThan(15);
    for (const f of kiln) {
      expect([f.name, f.help.length > 10]).toEqual([f.name, true]);
      // Counters end in _total; nothing else does; durations are seconds.
      expect([f.name, f.type === 'counter']).toEqual([f.name, f.name.endsWith('_total')]);
      expect([f.name, /_(ms|milliseconds|minutes|hours)\b/.test(f.name)]).toEqual([f.name, false]);
      if (f.type === 'histogram') expect(f.name).toMatch(/_(seconds|bytes)$/);
    }
    // The process's own metrics are there too.
    expect(families.get('process_resident_memory_bytes')?.type).toBe('gauge');
  });

  test('the Grafana dashboard in the repository uses only metrics the coordinator exports', async () => {
    const families = await scrape(t);
    const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'contrib', 'grafana', 'kiln-dashboard.json'), 'utf8')) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const used = new Set(dashboard.panels.flatMap((p) => p.targets.flatMap((x) => x.expr.match(/\bkiln_[a-z_]+/g) ?? [])));
    expect(used.size).toBeGreaterThan(10);
    const unknown = [...used].filter((name) => !families.has(name) && !families.has(name.replace(/_(bucket|sum|count)$/, '')));
    expect(unknown).toEqual([]);
  });

  test('hook deliveries not done are counted by hook and state', async () => {
    const db = t.coordinator.database.db;
    const made = await db.insert(events).values([{ type: 'test-a' }, { type: 'test-b' }, { type: 'test-c' }]).returning({ id: events.id });
    await db.insert(hookDeliveries).values([
      { hook: 'metrics-test', eventId: made[0]!.id, state: 'pending' },
      { hook: 'metrics-test', eventId: made[1]!.id, state: 'parked', lastError: 'failed on purpose' },
      { hook: 'metrics-test', eventId: made[2]!.id, state: 'done' },
      { hook: 'metrics-other', eventId: made[2]!.id, state: 'pending' },
    ]);
    const m = await scrape(t);
    expect(sampleValue(m, 'kiln_hook_deliveries', { hook: 'metrics-test', state: 'pending' })).toBe(1);
    expect(sampleValue(m, 'kiln_hook_deliveries', { hook: 'metrics-test', state: 'parked' })).toBe(1);
    expect(sampleValue(m, 'kiln_hook_deliveries', { hook: 'metrics-test', state: 'done' })).toBeUndefined();
    expect(sampleValue(m, 'kiln_hook_deliveries', { hook: 'metrics-other', state: 'pending' })).toBe(1);
    await db.delete(events).where(inArray(events.id, made.map((e) => e.id)));
  });

  test('the counters, the queue and the agents are what the test did', async () => {
    const nonce = randomUUID().slice(0, 8);
    const drvs = instantiate(`[ ${[0, 1, 2, 3].map((i) => `(${shDrv(`metric-${i}-${nonce}`, `echo ${i} > $out`)})`).join(' ')} ]`);
    const before = await scrape(t);
    const submittedBefore = sampleValue(before, 'kiln_builds_submitted_total') ?? 0;
    const ids: string[] = [];
    for (const drv of drvs) ids.push((await t.admin.submitBuild({ derivationPath: drv, derivations: closureOf(drv) })).build!.id);

    // Four builds submitted, all ready, no agent.
    let m = await scrape(t);
    expect(sampleValue(m, 'kiln_builds_submitted_total')).toBe(submittedBefore + 4);
    expect(sampleValue(m, 'kiln_builds', { state: 'scheduled', system: SYSTEM })).toBe(4);
    expect(sampleValue(m, 'kiln_queue_ready_builds', { system: SYSTEM })).toBe(4);
    expect(sampleValue(m, 'kiln_queue_oldest_ready_build_age_seconds', { system: SYSTEM })).toBeGreaterThanOrEqual(0);
    expect(sampleValue(m, 'kiln_agents_connected')).toBe(0);
    expect(sampleValue(m, 'kiln_db_pool_max_connections')).toBe(kind === 'pglite' ? 1 : 10);

    // An agent with two slots takes two; one succeeds (uploading its output), one fails.
    agent = await connectTestAgent(t, { maxParallel: 2 });
    const [first, second] = [await agent.nextAssignment(), await agent.nextAssignment()];
    for (const a of [first!, second!]) agent.send({ case: 'buildStarted', value: { buildId: a.buildId } });
    const outputs = await uploadTinyOutputs(t, agent, first!);
    agent.send({ case: 'buildFinished', value: { buildId: first!.buildId, result: BuildResult.SUCCESS, outputs, message: '' } });
    agent.send({ case: 'buildFinished', value: { buildId: second!.buildId, result: BuildResult.FAILURE, outputs: [], message: 'failed on purpose' } });
    // Their slots go to the other two.
    const [third, fourth] = [await agent.nextAssignment(), await agent.nextAssignment()];
    expect(new Set([first!.buildId, second!.buildId, third!.buildId, fourth!.buildId])).toEqual(new Set(ids));
    const state = async (id: string) => (await t.admin.getBuild({ id })).build!.state;
    await waitForBuilds(
      t.coordinator,
      async () => (await state(first!.buildId)) === BuildState.SUCCEEDED && (await state(second!.buildId)) === BuildState.FAILED,
      30_000,
      async () => `states ${await state(first!.buildId)} ${await state(second!.buildId)}`,
    );

    // An agent that reconnects repeats its reports: harmless, and not counted again.
    const acknowledged = async (n: number) => {
      const ids: string[] = [];
      while (ids.length < n) ids.push(await agent!.nextAcknowledgement());
      return ids;
    };
    await acknowledged(2); // the two ends (a start is acknowledged only if refused)
    agent.send({ case: 'buildFinished', value: { buildId: first!.buildId, result: BuildResult.SUCCESS, outputs, message: '' } });
    agent.send({ case: 'buildFinished', value: { buildId: second!.buildId, result: BuildResult.FAILURE, outputs: [], message: 'failed on purpose' } });
    expect(await acknowledged(2)).toEqual([first!.buildId, second!.buildId]);

    m = await scrape(t);
    expect(sampleValue(m, 'kiln_builds_started_total')).toBe(2);
    expect(sampleValue(m, 'kiln_builds_finished_total', { outcome: 'success' })).toBe(1);
    expect(sampleValue(m, 'kiln_builds_finished_total', { outcome: 'failure' })).toBe(1);
    expect(sampleValue(m, 'kiln_builds_failed_total', { reason: 'failure' })).toBe(1);
    expect(sampleValue(m, 'kiln_builds_assigned_total')).toBe(4);
    expect(sampleValue(m, 'kiln_allocation_latency_seconds_count')).toBeGreaterThanOrEqual(2);
    expect(sampleValue(m, 'kiln_builds', { state: 'allocated', system: SYSTEM })).toBe(2);
    expect(sampleValue(m, 'kiln_builds', { state: 'scheduled', system: SYSTEM })).toBeUndefined();
    expect(sampleValue(m, 'kiln_queue_ready_builds', { system: SYSTEM })).toBeUndefined();

    // The bytes the upload stored, as the database recorded them.
    const stored = await t.coordinator.database.db.select({ fileSize: storePaths.fileSize }).from(storePaths).where(inArray(storePaths.path, outputs.map((o) => o.path)));
    expect(sampleValue(m, 'kiln_upload_bytes_total', { kind: 'output' })).toBe(stored.reduce((a, r) => a + r.fileSize, 0));
    expect(sampleValue(m, 'kiln_upload_duration_seconds_count', { kind: 'output' })).toBe(outputs.length);

    const id = { agent_id: agent.agentId };
    expect(sampleValue(m, 'kiln_agents_connected')).toBe(1);
    expect(sampleValue(m, 'kiln_agent_slots', id)).toBe(2);
    expect(sampleValue(m, 'kiln_agent_builds_held', id)).toBe(2);
    expect(sampleValue(m, 'kiln_agent_free_slots', id)).toBe(0);

    // The hook runner may hand events on while we look: the scrape lies between two counts.
    const pending = async () => Number((await t.coordinator.database.db.select({ n: count() }).from(events).where(isNull(events.processedAt)))[0]!.n);
    const pendingBefore = await pending();
    const scraped = sampleValue(await scrape(t), 'kiln_hook_events_pending')!;
    const after = await pending();
    expect(scraped).toBeGreaterThanOrEqual(after);
    expect(scraped).toBeLessThanOrEqual(pendingBefore);
    expect(sampleValue(m, 'kiln_db_pool_connections_in_use')).toBeGreaterThanOrEqual(0);
  });

  test('promtool check metrics accepts the page, every family with samples by now', async () => {
    const page = await scrapeText(t);
    // The test above left a sample in the labelled and histogram families too.
    const families = parsePrometheusText(page);
    for (const name of ['kiln_builds', 'kiln_agent_slots', 'kiln_upload_duration_seconds', 'kiln_allocation_latency_seconds']) {
      expect([name, families.get(name)!.samples.length > 0]).toEqual([name, true]);
    }
    expect(promtool(page)).toEqual({ status: 0, complaints: '' });
    // prom-client's gauges named like counters are gone; their families by type stay.
    expect(families.has('nodejs_active_handles_total')).toBe(false);
    expect(families.get('nodejs_active_handles')?.type).toBe('gauge');
  });

  test('promtool is a real check: it refuses a gauge named like a counter', () => {
    const refused = promtool('# HELP kiln_x_total x\n# TYPE kiln_x_total gauge\nkiln_x_total 1\n');
    expect(refused.status).not.toBe(0);
    expect(refused.complaints).toContain('kiln_x_total non-counter metrics should not have "_total" suffix');
  });
});
