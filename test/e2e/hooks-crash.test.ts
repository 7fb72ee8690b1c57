// At least once, across a crash: a coordinator process is killed with SIGKILL while hook
// deliveries are pending and running; after a restart on the same PostgreSQL every event
// is handled, none lost. The hook here is not idempotent (it appends a line per event),
// so an event whose delivery was running at the crash may be recorded twice: that is
// what at-least-once means, and why hooks must be written to be harmless when repeated.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAdminClient } from '../../src/client/admin-client.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import { startCoordinatorProcess, type CoordinatorProcess } from '../helpers/coordinator-process.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';

const EVENTS = 12;

/** Resolves when `done()` holds, checked whenever something in `dir` changes; rejects after the bound. */
function whenDir(dir: string, done: () => boolean, timeoutMs: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const finish = (err?: Error) => {
      clearTimeout(timer);
      watcher.close();
      if (err) reject(err);
      else resolve();
    };
    const watcher = watch(dir, () => {
      if (done()) finish();
    });
    const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
    if (done()) finish();
  });
}

describe('hook deliveries survive a coordinator killed with SIGKILL', () => {
  let database: TestDatabase;
  let dir: string;
  let coordinator: CoordinatorProcess | undefined;

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    dir = mkdtempSync(join(tmpdir(), 'kiln-crash-'));
  });
  afterAll(async () => {
    await coordinator?.stop('SIGKILL');
    writeFileSync(join(dir, 'go'), ''); // lets any orphaned hook command finish
    await database?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('every event is handled after the restart, none lost', async () => {
    const seen = join(dir, 'seen.jsonl');
    const go = join(dir, 'go');
    // The hook marks that it started (with its pid), waits for `go`, then appends the event.
    const script = `echo $$ > ${dir}/started-$KILN_EVENT_ID; while [ ! -e ${go} ]; do sleep 0.05; done; cat >> ${seen}`;
    const config = join(dir, 'kiln.json');
    writeFileSync(config, JSON.stringify({ hooks: [{ name: 'recorder', events: ['build-submitted'], concurrency: 3, timeoutSeconds: 3, command: ['/bin/sh', '-c', script] }] }));
    const dataDir = join(dir, 'data');
    coordinator = await startCoordinatorProcess({ dataDir, databaseUrl: database.url, args: ['--config', config] });
    const admin = createAdminClient(coordinator.url, readFileSync(join(dataDir, 'admin-token'), 'utf8').trim());

    const ids: string[] = [];
    for (let i = 0; i < EVENTS; i++) {
      const d = makeDerivation({ name: `crash-${i}-${randomUUID().slice(0, 8)}`, system: 'x86_64-linux', builder: '/bin/sh' }, '/nix/store', new Map());
      ids.push((await admin.submitBuild({ derivationPath: d.path, derivations: [{ path: d.path, text: Buffer.from(d.text) }] })).build!.id);
    }
    // Three deliveries are running (their commands wait), the rest pending: now the crash.
    await whenDir(dir, () => readdirSync(dir).filter((f) => f.startsWith('started-')).length >= 3, 30_000, 'three hook commands to start');
    expect(await coordinator.stop('SIGKILL')).toBe(null);
    // As on a machine that died, the running hook commands die with it: only a new delivery
    // can record their events.
    for (const f of readdirSync(dir).filter((n) => n.startsWith('started-'))) {
      const pid = Number(readFileSync(join(dir, f), 'utf8').trim());
      if (pid) process.kill(pid, 'SIGKILL');
    }
    const interrupted = readdirSync(dir).filter((f) => f.startsWith('started-')).length;
    writeFileSync(go, '');

    coordinator = await startCoordinatorProcess({ dataDir, databaseUrl: database.url, args: ['--config', config] });
    // Complete lines only: a hook may be writing the last one as we read.
    const recorded = () =>
      existsSync(seen) ? readFileSync(seen, 'utf8').split('\n').slice(0, -1).map((l) => (JSON.parse(l) as { buildId: string }).buildId) : [];
    await whenDir(dir, () => ids.every((id) => recorded().includes(id)), 60_000, `all ${EVENTS} events in ${seen}`);
    const counts = new Map<string, number>();
    for (const id of recorded()) counts.set(id, (counts.get(id) ?? 0) + 1);
    // None lost; repeats only of the deliveries that were running at the crash.
    expect([...counts.keys()].sort()).toEqual([...ids].sort());
    expect([...counts.values()].filter((n) => n > 1).length).toBeLessThanOrEqual(interrupted);

    const admin2 = createAdminClient(coordinator.url, readFileSync(join(dataDir, 'admin-token'), 'utf8').trim());
    const open = await admin2.listEvents({ types: ['build-submitted'], deliveryStates: ['pending', 'running', 'parked'] });
    // The last deliveries may still be recording their outcome; none may be parked.
    expect(open.events.flatMap((e) => e.deliveries).filter((d) => d.state === 'parked')).toEqual([]);
  }, 120_000);
});
