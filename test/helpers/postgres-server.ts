// The private PostgreSQL server lives with the benchmarks (which start one too); tests
// reach it here. `.ts`: jest's global setup loads this without the `.js` mapping.
export { createDatabase, dropDatabase, freePort, startPostgres, type PostgresServer } from '../../bench/postgres-server.ts';
