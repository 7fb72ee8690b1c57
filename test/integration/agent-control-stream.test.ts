// The agent's end of the control stream (ControlStream) against a real coordinator: a
// report the coordinator refuses is logged, dropped from the resend queue, and the
// stream stays up (no reconnect that would send it again).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { Writable } from 'node:stream';
import { Code } from '@connectrpc/connect';
import { pino } from 'pino';
import { BuildResult, ReportKind, type Refusal } from '../../gen/kiln/v1/agent_pb.js';
import { agentClient } from '../../src/agent/agent.js';
import { ControlStream, type Report } from '../../src/agent/control-stream.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { chain, closureOf, SYSTEM } from '../helpers/derivations.js';

const WAIT_MS = 20_000;

/** Resolves with the first value `arm` delivers, or rejects after a bound. */
function nextEvent<T>(what: string, arm: (deliver: (value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${what} within ${WAIT_MS} ms`)), WAIT_MS);
    arm((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

describe.each(DATABASE_KINDS)('the agent control stream on %s', (kind) => {
  let t: TestCoordinator;
  let leaf: string;

  beforeAll(async () => {
    // nix-instantiate runs synchronously: before the coordinator serves.
    leaf = chain(`${kind}-control-stream`).leaf;
    t = await startTestCoordinator(kind);
  });
  afterAll(async () => {
    await t?.stop();
  });

  test('a refused report is logged with its code and message, dropped from the resend queue, and the stream stays up', async () => {
    // A build nobody holds: any report on it is refused with PERMISSION_DENIED.
    const { build } = await t.admin.submitBuild({ derivationPath: leaf, derivations: closureOf(leaf), tags: [{ key: 'held-by', value: 'nobody' }] });
    const { agent } = await t.admin.createAgent({ name: 'refused' });
    const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });

    const logged: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(line: Buffer, _encoding, done) {
        logged.push(JSON.parse(line.toString()) as Record<string, unknown>);
        done();
      },
    });
    let welcomes = 0;
    let onWelcome = () => {};
    let onRefused = (_: { buildId: string; refusal: Refusal; report: Report | undefined }) => {};
    const stream = new ControlStream({
      client: agentClient(t.coordinator.url, agent!.id, password),
      systems: [SYSTEM],
      maxParallel: 1,
      tags: [],
      version: 'test',
      log: pino({ level: 'info' }, sink),
      handlers: {
        heldBuilds: () => [],
        freeSlots: () => 0,
        onWelcome: () => {
          welcomes++;
          onWelcome();
        },
        onAssign: () => {},
        onCancel: () => {},
        onDrain: () => {},
        onRefused: (buildId, refusal, report) => onRefused({ buildId, refusal, report }),
      },
    });
    const stop = new AbortController();
    const running = stream.run(stop.signal);
    try {
      await nextEvent<void>('welcome', (deliver) => (onWelcome = deliver));
      const refused = nextEvent<{ buildId: string; refusal: Refusal; report: Report | undefined }>('refusal', (deliver) => (onRefused = deliver));
      stream.report({ case: 'buildFinished', value: { buildId: build!.id, result: BuildResult.FAILURE, message: 'not mine' } });
      expect(stream.unconfirmed()).toEqual([build!.id]);

      const { buildId, refusal, report } = await refused;
      expect(buildId).toBe(build!.id);
      expect(refusal.code).toBe(Code.PermissionDenied);
      expect(refusal.report).toBe(ReportKind.BUILD_FINISHED);
      expect(refusal.message).toContain(`build ${build!.id} is not allocated to agent ${agent!.id}`);
      expect(report?.case).toBe('buildFinished');
      expect(stream.unconfirmed()).toEqual([]);
      expect(logged).toContainEqual(
        expect.objectContaining({ msg: 'the coordinator refused a report; it is not sent again', buildId: build!.id, code: 'PermissionDenied', report: 'BUILD_FINISHED' }),
      );

      // Still the first stream: a later report is answered on it too, with no reconnect.
      const again = nextEvent<{ refusal: Refusal }>('second refusal', (deliver) => (onRefused = deliver));
      stream.report({ case: 'buildStarted', value: { buildId: build!.id } });
      expect((await again).refusal.report).toBe(ReportKind.BUILD_STARTED);
      expect(stream.connected).toBe(true);
      expect(welcomes).toBe(1);
      expect(logged.filter((l) => String(l.msg).includes('reconnecting'))).toEqual([]);
    } finally {
      stop.abort();
      await running;
    }
  });
});
