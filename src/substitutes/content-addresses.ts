// Which stored path is the output of a fixed-output derivation, and its content address
// for the narinfo's `CA:` line (Nix writes one for them; other paths have none).
import { and, eq, ne } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { derivationOutputs } from '../db/schema.js';
import { fixedOutputContentAddress } from '../store/content-address.js';

export async function contentAddressOf(db: Pick<Database, 'select'>, path: string): Promise<string | undefined> {
  const [fixed] = await db
    .select({ hashAlgo: derivationOutputs.hashAlgo, hash: derivationOutputs.hash })
    .from(derivationOutputs)
    .where(and(eq(derivationOutputs.path, path), ne(derivationOutputs.hash, '')))
    .limit(1);
  return fixed ? fixedOutputContentAddress(fixed.hashAlgo, fixed.hash) : undefined;
}
