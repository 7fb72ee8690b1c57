// Operators' hooks through the real coordinator on both databases: a command receives
// real events as JSON on stdin, a module receives them with an AdminService client, a
// failing hook is retried and then parked (visible in ListEvents) until RetryEvent.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ConnectError } from '@connectrpc/connect';
import type { HookEvent } from '../../src/hooks/hook.js';
import type { DeliveryOutcome } from '../../src/hooks/runner.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';

const SYSTEM = 'x86_64-linux';

/** Resolves with the first delivery outcome that matches, or rejects after the bound. */
function nextDelivery(t: TestCoordinator, match: (d: DeliveryOutcome) => boolean, timeoutMs = 20_000): Promise<DeliveryOutcome> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching hook delivery within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = t.coordinator.hooks.onDelivery((d) => {
      if (!match(d)) return;
      clearTimeout(timer);
      off();
      resolve(d);
    });
  });
}

describe.each(DATABASE_KINDS)('hooks on %s', (kind) => {
  let t: TestCoordinator;
  let dir: string;
  let seen: string;
  let failSwitch: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-hooks-'));
    seen = join(dir, 'seen.jsonl');
    failSwitch = join(dir, 'fail');
    writeFileSync(failSwitch, '');
    // A module hook that tags every submitted build through the AdminService client.
    writeFileSync(
      join(dir, 'tagger.mjs'),
      `export async function handler(event, { admin, log }) {
        await admin.updateBuildTags({ id: event.buildId, set: [{ key: 'seen-by', value: 'module-' + event.attempt }], removeKeys: [] });
        log.info({ build: event.buildId }, 'tagged');
      }\n`,
    );
    t = await startTestCoordinator(kind, {
      hookPollMs: 100,
      hooks: [
        { name: 'recorder', events: ['build-submitted', 'build-canceled'], command: ['/bin/sh', '-c', `cat >> ${seen}`] },
        { name: 'tagger', events: ['build-submitted'], module: join(dir, 'tagger.mjs') },
        { name: 'flaky', events: ['build-canceled'], maxAttempts: 2, command: ['/bin/sh', '-c', `cat > /dev/null; if [ -e ${failSwitch} ]; then echo refusing on purpose >&2; exit 4; fi`] },
      ],
    });
  });
  afterAll(async () => {
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function submit(): Promise<string> {
    const d = makeDerivation({ name: `hooked-${randomUUID().slice(0, 8)}`, system: SYSTEM, builder: '/bin/sh' }, '/nix/store', new Map());
    const { build } = await t.admin.submitBuild({ derivationPath: d.path, derivations: [{ path: d.path, text: Buffer.from(d.text) }] });
    return build!.id;
  }

  test('a command hook reads each event as JSON on stdin, and a module hook acts through the AdminService', async () => {
    const recorded = nextDelivery(t, (d) => d.hook === 'recorder' && d.eventType === 'build-submitted');
    const tagged = nextDelivery(t, (d) => d.hook === 'tagger');
    const id = await submit();
    expect((await recorded).outcome).toBe('done');
    expect((await tagged).outcome).toBe('done');
    const lines = readFileSync(seen, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as HookEvent);
    const event = lines.find((e) => e.buildId === id)!;
    expect(event).toMatchObject({ type: 'build-submitted', buildId: id, attempt: 1 });
    expect(event.payload).toMatchObject({ priority: 0 });
    const { build } = await t.admin.getBuild({ id });
    expect(build!.tags).toEqual([expect.objectContaining({ key: 'seen-by', value: 'module-1' })]);
  });

  test('a failing hook is retried, then parked and listed, until RetryEvent delivers it again', async () => {
    const id = await submit();
    const parked = nextDelivery(t, (d) => d.hook === 'flaky' && d.outcome === 'parked');
    const firstFailure = nextDelivery(t, (d) => d.hook === 'flaky' && d.outcome === 'retry');
    await t.admin.cancelBuild({ id });
    expect((await firstFailure).error).toContain('refusing on purpose');
    const { eventId, attempt } = await parked;
    expect(attempt).toBe(2);

    const listed = await t.admin.listEvents({ buildId: id, deliveryStates: ['parked'] });
    expect(listed.events.map((e) => e.type)).toEqual(['build-canceled']);
    const delivery = listed.events[0]!.deliveries.find((d) => d.hook === 'flaky')!;
    expect(delivery).toMatchObject({ state: 'parked', attempts: 2 });
    expect(delivery.lastError).toContain('exited with 4');
    // The other hook on the same event was not held back by this one.
    expect(listed.events[0]!.deliveries.find((d) => d.hook === 'recorder')!.state).toBe('done');

    rmSync(failSwitch);
    const delivered = nextDelivery(t, (d) => d.hook === 'flaky' && d.eventId === eventId);
    expect((await t.admin.retryEvent({ id: BigInt(eventId), hook: 'flaky' })).retried).toBe(1);
    expect((await delivered).outcome).toBe('done');
    const err = await t.admin.retryEvent({ id: BigInt(eventId) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.FailedPrecondition);
    writeFileSync(failSwitch, '');
    expect(existsSync(failSwitch)).toBe(true);
  }, 30_000);

  test('a hook configuration with a mistake stops the coordinator at start, saying what is wrong', async () => {
    await expect(startTestCoordinator(kind, { hooks: [{ name: 'x', events: ['build-exploded'], command: ['true'] }] })).rejects.toThrow(
      /hooks\[0\] \(x\): "build-exploded" is not an event type/,
    );
    await expect(startTestCoordinator(kind, { hooks: [{ name: 'm', events: ['*'], module: join(dir, 'missing.mjs') }] })).rejects.toThrow(/hook m: cannot load/);
  });
});
