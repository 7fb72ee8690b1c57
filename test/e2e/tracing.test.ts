// One build across a coordinator process and an agent process, both exporting their
// spans over OTLP to a receiver in this test: the build's attempt is one trace, every
// span in it hangs from the right parent (the agent's from the assignment, through
// AssignBuild's traceparent; the coordinator's upload spans from the agent's, through
// the upload call's headers), spans carry the build's attributes, and every log line
// either process wrote about the build names the trace.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAdminClient, type AdminClient } from '../../src/client/admin-client.js';
import { buildRootSpanId, buildTraceId } from '../../src/telemetry/build-trace.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { startCoordinatorProcess, type CoordinatorProcess } from '../helpers/coordinator-process.js';
import { closureOf, shDrv, SYSTEM } from '../helpers/derivations.js';
import { instantiate } from '../helpers/nix.js';
import { OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.js';

/** The spans one traced build must yield, by name, with the service that makes each. */
const EXPECTED: Record<string, string> = {
  'kiln.build': 'kiln-coordinator',
  'kiln.build.submit': 'kiln-coordinator',
  'kiln.build.queued': 'kiln-coordinator',
  'kiln.build.assign': 'kiln-coordinator',
  'kiln.build.report.started': 'kiln-coordinator',
  'kiln.build.report.finished': 'kiln-coordinator',
  'kiln.upload.log': 'kiln-coordinator',
  'kiln.upload.output': 'kiln-coordinator',
  'kiln.agent.build': 'kiln-agent',
  'kiln.agent.setup': 'kiln-agent',
  'kiln.agent.run': 'kiln-agent',
  'kiln.agent.upload.log': 'kiln-agent',
  'kiln.agent.upload.output': 'kiln-agent',
};

/** The JSON log lines in a process's output. */
function logLines(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('tracing across a coordinator and an agent process', () => {
  let receiver: OtlpReceiver;
  let coordinator: CoordinatorProcess;
  let agent: AgentProcess;
  let admin: AdminClient;
  let root: string;

  beforeAll(async () => {
    receiver = await OtlpReceiver.start();
    root = mkdtempSync(join(tmpdir(), 'kiln-tracing-'));
    coordinator = await startCoordinatorProcess({ dataDir: join(root, 'coordinator'), env: { ...receiver.env(), KILN_LOG_LEVEL: 'debug' } });
    admin = createAdminClient(coordinator.url, readFileSync(join(root, 'coordinator', 'admin-token'), 'utf8').trim());
    const { agent: created } = await admin.createAgent({ name: 'traced' });
    const { password } = await admin.createAgentPassword({ agentId: created!.id });
    agent = startAgentProcess({ coordinatorUrl: coordinator.url, id: created!.id, password, store: join(root, 'agent'), builder: 'local', env: receiver.env() });
  });

  afterAll(async () => {
    await agent?.stop();
    await coordinator?.stop();
    await receiver?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('one build attempt is one trace whose spans have the right parents and attributes, and its log lines name it', async () => {
    const nonce = randomUUID().slice(0, 8);
    const [drv] = instantiate(shDrv(`traced-${nonce}`, 'echo building; echo traced > $out'));
    const { build } = await admin.submitBuild({ derivationPath: drv!, derivations: closureOf(drv!) });
    const buildId = build!.id;
    const traceId = buildTraceId(buildId, 1);

    const ofTrace = (spans: ReceivedSpan[]) => spans.filter((s) => s.traceId === traceId);
    await receiver.waitFor(
      (spans) => Object.keys(EXPECTED).every((name) => ofTrace(spans).some((s) => s.name === name)),
      120_000,
      `every span of build ${buildId}'s trace\n${agent.output().slice(-2000)}`,
    );
    const spans = ofTrace(receiver.spans);
    const one = (name: string): ReceivedSpan => {
      const found = spans.filter((s) => s.name === name);
      expect(found.map((s) => s.name)).toEqual([name]);
      return found[0]!;
    };
    for (const [name, service] of Object.entries(EXPECTED)) expect([name, one(name).service]).toEqual([name, service]);

    // The root: the attempt from submission to its final report, with ids every process derived alike.
    const rootSpan = one('kiln.build');
    expect(rootSpan.spanId).toBe(buildRootSpanId(buildId, 1));
    expect(rootSpan.parentSpanId).toBe('');
    expect(rootSpan.attributes).toMatchObject({
      'kiln.build.id': buildId,
      'kiln.build.derivation': drv,
      'kiln.build.system': SYSTEM,
      'kiln.build.attempt': 1,
      'kiln.agent.id': expect.any(String),
      'kiln.build.outcome': 'success',
    });
    const agentId = rootSpan.attributes['kiln.agent.id'];

    const parentOf = (name: string) => spans.find((s) => s.spanId === one(name).parentSpanId)?.name;
    const parents = Object.fromEntries(Object.keys(EXPECTED).filter((n) => n !== 'kiln.build').map((n) => [n, parentOf(n)]));
    expect(parents).toEqual({
      'kiln.build.submit': 'kiln.build',
      'kiln.build.queued': 'kiln.build',
      'kiln.build.assign': 'kiln.build',
      'kiln.build.report.started': 'kiln.build',
      'kiln.build.report.finished': 'kiln.build',
      // The agent continues the assignment (AssignBuild.traceparent)...
      'kiln.agent.build': 'kiln.build.assign',
      'kiln.agent.setup': 'kiln.agent.build',
      'kiln.agent.run': 'kiln.agent.build',
      'kiln.agent.upload.log': 'kiln.agent.build',
      'kiln.agent.upload.output': 'kiln.agent.build',
      // ...and the coordinator continues the agent's uploads (traceparent in the call's headers);
      // the output is small, so it came inside the success report, under whose span it was stored.
      'kiln.upload.log': 'kiln.agent.upload.log',
      'kiln.upload.output': 'kiln.build.report.finished',
    });

    // Time runs forward: queued, then assigned, then the agent's phases in order (to the
    // millisecond: the SDK takes a span's start from the wall clock's milliseconds).
    const MS = 1_000_000n;
    expect(one('kiln.build.queued').endNs).toBeLessThanOrEqual(one('kiln.agent.build').startNs + MS);
    expect(one('kiln.agent.setup').endNs).toBeLessThanOrEqual(one('kiln.agent.run').startNs + MS);
    // The attempt begins when the build is written, inside the SubmitBuild call.
    expect(rootSpan.startNs).toBeGreaterThanOrEqual(one('kiln.build.submit').startNs - MS);
    expect(rootSpan.startNs).toBeLessThanOrEqual(one('kiln.build.submit').endNs + MS);
    expect(rootSpan.endNs + MS).toBeGreaterThanOrEqual(one('kiln.build.report.finished').startNs);

    expect(one('kiln.build.assign').attributes).toMatchObject({ 'kiln.build.id': buildId, 'kiln.build.derivation': drv, 'kiln.build.attempt': 1, 'kiln.agent.id': agentId });
    expect(one('kiln.agent.build').attributes).toMatchObject({
      'kiln.build.id': buildId,
      'kiln.build.derivation': drv,
      'kiln.build.system': SYSTEM,
      'kiln.build.attempt': 1,
      'kiln.agent.id': agentId,
      'kiln.build.outcome': 'success',
    });
    const [output] = build!.outputs;
    expect(one('kiln.agent.upload.output').attributes).toMatchObject({ 'kiln.build.id': buildId, 'kiln.output.name': 'out', 'kiln.output.path': output!.path });
    expect(one('kiln.agent.upload.output').attributes['kiln.upload.nar_bytes']).toBeGreaterThan(0);
    const received = one('kiln.upload.output').attributes;
    expect(received).toMatchObject({ 'kiln.build.id': buildId, 'kiln.agent.id': agentId, 'kiln.output.name': 'out' });
    expect(received['kiln.upload.bytes']).toBeGreaterThan(0);
    expect(spans.filter((s) => s.statusCode === 2).map((s) => s.name)).toEqual([]);

    // Every log line about the build, in either process, carries its trace id.
    for (const [who, output] of [['coordinator', coordinator.stderr()], ['agent', agent.output()]] as const) {
      const about = logLines(output).filter((l) => l.buildId === buildId);
      expect([who, about.length > 0]).toEqual([who, true]);
      expect(about.filter((l) => l.traceId !== traceId).map((l) => `${who}: ${String(l.msg)}`)).toEqual([]);
    }
  }, 180_000);
});
