// Every database test runs on both engines kiln supports: PGlite (the embedded default)
// and PostgreSQL (the private server the jest global setup started).
import { randomUUID } from 'node:crypto';
import type { DatabaseOptions } from '../../src/db/connection.js';
import { createDatabase, dropDatabase } from './postgres-server.js';

export type DatabaseKind = 'pglite' | 'postgres';
export const DATABASE_KINDS: DatabaseKind[] = ['pglite', 'postgres'];

export interface TestDatabase {
  kind: DatabaseKind;
  options: DatabaseOptions;
  /** For PostgreSQL, the URL of this test's own database. */
  url?: string;
  drop(): Promise<void>;
}

function serverUrl(): string {
  const url = process.env.KILN_TEST_POSTGRES_URL;
  if (!url) throw new Error('KILN_TEST_POSTGRES_URL is not set: the jest global setup starts PostgreSQL');
  return url;
}

/** A fresh, empty database of the given kind, for one test suite. */
export async function createTestDatabase(kind: DatabaseKind): Promise<TestDatabase> {
  if (kind === 'pglite') return { kind, options: { memory: true }, drop: async () => {} };
  const name = `kiln_test_${randomUUID().replace(/-/g, '')}`;
  const url = await createDatabase(serverUrl(), name);
  return { kind, options: { url }, url, drop: () => dropDatabase(serverUrl(), name) };
}
