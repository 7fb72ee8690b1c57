// One PostgreSQL server for the whole test run; each suite makes its own database in it.
// KILN_TEST_POSTGRES_URL given from outside (an existing server) is used as it is.
import { startPostgres } from './helpers/postgres-server.ts';

export default async function globalSetup(): Promise<void> {
  if (process.env.KILN_TEST_POSTGRES_URL) return;
  const server = await startPostgres();
  process.env.KILN_TEST_POSTGRES_URL = server.url;
  (globalThis as { __kilnPostgres?: typeof server }).__kilnPostgres = server;
}
