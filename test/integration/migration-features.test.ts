// Upgrading a database made before system features: the migration reads each stored
// derivation's requiredSystemFeatures from its text, and unfinished builds get them, so a
// build queued before the upgrade is still placed by them. On both databases.
import { afterEach, describe, expect, test } from '@jest/globals';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { openDatabase } from '../../src/db/connection.js';
import { rowsOf } from '../../src/db/rows.js';
import { makeDerivation } from '../../src/store/make-derivation.js';
import { REPO_ROOT } from '../helpers/coordinator.js';
import { createTestDatabase, DATABASE_KINDS, type TestDatabase } from '../helpers/databases.js';

/** The migrations as they were before this one: the journal cut at its entry. */
function migrationsBefore(tag: string, dir: string): string {
  cpSync(join(REPO_ROOT, 'migrations'), dir, { recursive: true });
  const journalPath = join(dir, 'meta', '_journal.json');
  const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: { tag: string }[] };
  journal.entries = journal.entries.slice(0, journal.entries.findIndex((e) => e.tag === tag));
  writeFileSync(journalPath, JSON.stringify(journal));
  return dir;
}

async function migrateOld(db: TestDatabase, dataDir: string, folder: string, statements: string[]): Promise<void> {
  if (db.url) {
    const { default: postgres } = await import('postgres');
    const { drizzle } = await import('drizzle-orm/postgres-js');
    const { migrate } = await import('drizzle-orm/postgres-js/migrator');
    const client = postgres(db.url, { max: 1, onnotice: () => {} });
    await migrate(drizzle(client), { migrationsFolder: folder });
    for (const s of statements) await client.unsafe(s);
    await client.end();
    return;
  }
  const { PGlite } = await import('@electric-sql/pglite');
  const { drizzle } = await import('drizzle-orm/pglite');
  const { migrate } = await import('drizzle-orm/pglite/migrator');
  const client = new PGlite(dataDir);
  await migrate(drizzle({ client }), { migrationsFolder: folder });
  for (const s of statements) await client.exec(s);
  await client.close();
}

describe.each(DATABASE_KINDS)('the required-features migration on %s', (kind) => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0)) await c();
  });

  test('stored derivations and unfinished builds get the features their texts require', async () => {
    const db = await createTestDatabase(kind);
    const dir = mkdtempSync(join(tmpdir(), 'kiln-migrate-'));
    cleanup.push(() => db.drop(), () => rmSync(dir, { recursive: true, force: true }));
    const featured = makeDerivation({ name: 'featured', system: 'x86_64-linux', builder: '/bin/sh', env: { requiredSystemFeatures: 'kvm\nbig-parallel kvm' } }, '/nix/store', new Map());
    const plain = makeDerivation({ name: 'plain', system: 'x86_64-linux', builder: '/bin/sh' }, '/nix/store', new Map());
    const quote = (s: string) => `'${s.replace(/'/g, "''")}'`;
    const ids = ['00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000003'];
    await migrateOld(db, join(dir, 'db'), migrationsBefore('0005_required_features', join(dir, 'migrations')), [
      ...([
        ['featured', featured],
        ['plain', plain],
      ] as const).map(([name, d]) => `insert into derivations (path, name, system, text, hash_modulo) values (${quote(d.path)}, '${name}', 'x86_64-linux', ${quote(d.text)}, '')`),
      `insert into builds (id, derivation_path, system, state) values ('${ids[0]}', ${quote(featured.path)}, 'x86_64-linux', 'scheduled'),
         ('${ids[1]}', ${quote(plain.path)}, 'x86_64-linux', 'scheduled'), ('${ids[2]}', ${quote(featured.path)}, 'x86_64-linux', 'succeeded')`,
    ]);

    const handle = await openDatabase(db.url ? { url: db.url } : { dataDir: join(dir, 'db') });
    cleanup.unshift(() => handle.close());
    const derivations = rowsOf<{ path: string; required_features: string[] }>(await handle.db.execute(sql`select path, required_features from derivations order by name`));
    expect(derivations).toEqual([
      { path: featured.path, required_features: ['big-parallel', 'kvm'] },
      { path: plain.path, required_features: [] },
    ]);
    const builds = rowsOf<{ id: string; required_features: string[] }>(await handle.db.execute(sql`select id, required_features from builds order by id`));
    expect(builds.map((b) => b.required_features)).toEqual([['big-parallel', 'kvm'], [], []]);
  });
});
