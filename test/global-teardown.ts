import type { PostgresServer } from './helpers/postgres-server.js';

export default async function globalTeardown(): Promise<void> {
  await (globalThis as { __kilnPostgres?: PostgresServer }).__kilnPostgres?.stop();
}
