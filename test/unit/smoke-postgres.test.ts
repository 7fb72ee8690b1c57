import { expect, test } from '@jest/globals';
import postgres from 'postgres';

test('the test PostgreSQL server answers queries', async () => {
  const sql = postgres(process.env.KILN_TEST_POSTGRES_URL!, { max: 1 });
  const rows = await sql`select 1 + 1 as two`;
  expect(rows[0]!.two).toBe(2);
  await sql.end();
});
