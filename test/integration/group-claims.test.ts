// Agents alike in systems and tags claim together in one statement (priority-first's
// claimForGroup): the best builds are dealt round by round, and a group one of whose
// agents is excluded from a ready build is sent back to claim alone, on both databases.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type DatabaseHandle } from '../../src/db/connection.js';
import { agents, buildExclusions } from '../../src/db/schema.js';
import { dealSlots, priorityFirst } from '../../src/scheduler/allocation.js';
import { NO_FEATURES } from '../../src/scheduler/placement.js';
import { submitBuilds } from '../../src/scheduler/submission.js';
import { NarStorage } from '../../src/storage/nar-storage.js';
import { restoreDerivationNars } from '../../src/substitutes/derivation-nar.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import { createTestDatabase, DATABASE_KINDS, type TestDatabase } from '../helpers/databases.js';

const LEASE = { leaseMs: 60_000 };

test('slots are dealt round by round', () => {
  expect(dealSlots([{ agentId: 'a', limit: 3 }, { agentId: 'b', limit: 1 }, { agentId: 'c', limit: 2 }])).toEqual(['a', 'b', 'c', 'a', 'c', 'a']);
  expect(dealSlots([{ agentId: 'a', limit: 0 }])).toEqual([]);
});

describe.each(DATABASE_KINDS)('group claims on %s', (kind) => {
  let tdb: TestDatabase;
  let handle: DatabaseHandle;
  let narDir: string;
  let storage: NarStorage;

  beforeAll(async () => {
    tdb = await createTestDatabase(kind);
    handle = await openDatabase(tdb.options);
    narDir = mkdtempSync(join(tmpdir(), 'kiln-groups-'));
    storage = await NarStorage.open(narDir);
  });
  afterAll(async () => {
    await handle?.close();
    await tdb?.drop();
    if (narDir) rmSync(narDir, { recursive: true, force: true });
  });

  /** Ready builds of a system of their own, priorities as given; their ids in that order. */
  async function readyBuilds(priorities: number[]): Promise<{ system: string; ids: string[] }> {
    const system = `x86_64-linux-${randomUUID().slice(0, 8)}`;
    const made = priorities.map((_, i) => makeDerivation({ name: `g${i}`, system, builder: '/bin/sh' }, '/nix/store', new Map()));
    const { builds } = await submitBuilds(
      handle.db,
      (tx, roots) => restoreDerivationNars(tx, storage, roots),
      made.map((m, i) => ({ derivationPath: m.path, derivations: [{ path: m.path, text: Buffer.from(m.text) }], priority: priorities[i]!, tags: [], ignoreIfOutputExists: false })),
    );
    return { system, ids: builds.map((b) => b.build!.id) };
  }

  async function newAgents(n: number): Promise<string[]> {
    const ids = Array.from({ length: n }, () => randomUUID());
    await handle.db.insert(agents).values(ids.map((id) => ({ id, name: 'group' })));
    return ids;
  }

  test('the best builds go to the group, dealt round by round', async () => {
    const { system, ids } = await readyBuilds([1, 9, 5, 7, 3]);
    const [a, b] = await newAgents(2);
    const claimed = await priorityFirst.claimForGroup!(handle.db, { systems: [system], tags: [], features: NO_FEATURES, agents: [{ agentId: a!, limit: 2 }, { agentId: b!, limit: 1 }] }, LEASE);
    // Priorities 9, 7, 5 in that order, dealt a, b, a.
    expect(claimed?.get(a!)?.map((c) => c.id)).toEqual([ids[1], ids[2]]);
    expect(claimed?.get(b!)?.map((c) => c.id)).toEqual([ids[3]]);
  });

  test('a group with an agent excluded from a ready build is sent back to claim alone', async () => {
    const { system, ids } = await readyBuilds([4, 2]);
    const [a, b] = await newAgents(2);
    await handle.db.insert(buildExclusions).values({ buildId: ids[0]!, agentId: b!, reason: 'could not delete its outputs' });
    const group = { systems: [system], tags: [], features: NO_FEATURES, agents: [{ agentId: a!, limit: 1 }, { agentId: b!, limit: 1 }] };
    expect(await priorityFirst.claimForGroup!(handle.db, group, LEASE)).toBeUndefined();
    // Alone, each gets what it may: b not the build it is excluded from.
    expect((await priorityFirst.claim(handle.db, { agentId: b!, systems: [system], tags: [], features: NO_FEATURES }, 1, LEASE)).map((c) => c.id)).toEqual([ids[1]]);
    expect((await priorityFirst.claim(handle.db, { agentId: a!, systems: [system], tags: [], features: NO_FEATURES }, 1, LEASE)).map((c) => c.id)).toEqual([ids[0]]);
  });
});
