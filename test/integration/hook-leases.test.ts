// Hook deliveries are leased: a running delivery renews its lease while its handler runs
// (however long its time limit), and one whose coordinator died is taken by another
// within about a lease, not after twice the hook's time limit.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { startCoordinator, type Coordinator } from '../../src/coordinator/coordinator.js';
import { rowsOf } from '../../src/db/rows.js';
import type { HookSpec } from '../../src/hooks/hook-specs.js';
import { silentLogger } from '../../src/logger.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import { startTestCoordinator, type TestCoordinator } from '../helpers/coordinator.js';
import { DATABASE_KINDS } from '../helpers/databases.js';
import { waitUntil } from '../helpers/wait.js';

const LEASE_MS = 1500;

/** A hook that marks its start with its coordinator's name, then waits for `go`. */
function slowHook(dir: string, who: string): HookSpec {
  const script = `touch ${dir}/started-${who}-$KILN_EVENT_ID; while [ ! -e ${dir}/go ]; do sleep 0.05; done; touch ${dir}/done-${who}-$KILN_EVENT_ID`;
  // An hour's time limit: under the old rule (a lease of twice that) a dead coordinator's
  // delivery waited two hours.
  return { name: 'slow', events: ['build-submitted'], timeoutSeconds: 3600, maxAttempts: 5, command: ['/bin/sh', '-c', script] };
}

describe.each(DATABASE_KINDS)('hook leases on %s', (kind) => {
  let dir: string;
  let t: TestCoordinator;
  let other: Coordinator | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-lease-'));
    t = await startTestCoordinator(kind, { hooks: [slowHook(dir, 'a')], hookLeaseMs: LEASE_MS, hookPollMs: 100, publish: false });
  });
  afterAll(async () => {
    writeFileSync(join(dir, 'go'), '');
    await other?.stop();
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const delivery = async (eventId: number) =>
    rowsOf<{ state: string; attempts: number; lease_until: string | Date }>(
      await t.coordinator.database.db.execute(sql`select state, attempts, lease_until from hook_deliveries where hook = 'slow' and event_id = ${eventId}`),
    )[0];

  test('a delivery running past many leases keeps its lease; another coordinator takes it within a lease once its own is gone', async () => {
    const d = makeDerivation({ name: `lease-${randomUUID().slice(0, 8)}`, system: 'x86_64-linux', builder: '/bin/sh' }, '/nix/store', new Map());
    const { build } = await t.admin.submitBuild({ derivationPath: d.path, derivations: [{ path: d.path, text: Buffer.from(d.text) }] });
    const { events } = await t.admin.listEvents({ buildId: build!.id, types: ['build-submitted'] });
    const eventId = Number(events[0]!.id);
    await waitUntil(() => existsSync(join(dir, `started-a-${eventId}`)), 20_000, () => 'the hook to start on the first coordinator');

    // Renewed again and again: three leases later it is still the first delivery.
    const first = new Date((await delivery(eventId))!.lease_until).getTime();
    await waitUntil(async () => new Date((await delivery(eventId))!.lease_until).getTime() > first + 2 * LEASE_MS, 20_000, async () => `lease ${JSON.stringify(await delivery(eventId))}`);
    expect(await delivery(eventId)).toMatchObject({ state: 'running', attempts: 1 });

    if (kind === 'postgres') {
      // A second coordinator on the same database leaves it alone while the first lives...
      other = await startCoordinator({
        port: 0,
        dataDir: mkdtempSync(join(dir, 'b-')),
        database: t.database.options,
        log: silentLogger(),
        hooks: [slowHook(dir, 'b')],
        hookLeaseMs: LEASE_MS,
        hookPollMs: 100,
        publish: false,
      });
      const renewed = new Date((await delivery(eventId))!.lease_until).getTime();
      await waitUntil(async () => new Date((await delivery(eventId))!.lease_until).getTime() > renewed + LEASE_MS, 20_000, () => 'another renewal');
      expect(existsSync(join(dir, `started-b-${eventId}`))).toBe(false);
      // ...and takes it within about a lease of the first one's death (its delivery left
      // running, as a SIGKILL leaves it), though the hook's time limit is an hour.
      await t.coordinator.stop();
      await waitUntil(() => existsSync(join(dir, `started-b-${eventId}`)), 4 * LEASE_MS, () => 'the second coordinator to take the delivery');
      writeFileSync(join(dir, 'go'), '');
      const done = async () =>
        rowsOf<{ attempts: number }>(await other!.database.db.execute(sql`select attempts from hook_deliveries where hook = 'slow' and event_id = ${eventId} and state = 'done'`))[0];
      await waitUntil(async () => (await done()) !== undefined, 20_000, () => 'the delivery to be done');
      expect(await done()).toEqual({ attempts: 2 });
      expect(existsSync(join(dir, `done-b-${eventId}`))).toBe(true);
      // t.stop() below stops the first coordinator again: harmless.
    } else {
      writeFileSync(join(dir, 'go'), '');
      await waitUntil(async () => (await delivery(eventId))!.state === 'done', 20_000, async () => `delivery ${JSON.stringify(await delivery(eventId))}`);
      expect(await delivery(eventId)).toMatchObject({ state: 'done', attempts: 1 });
    }
  }, 60_000);
});
