// The content address of a stored path that is a fixed-output derivation's output, for
// its narinfo's `CA:` line (Nix writes one for such paths; kiln's other paths have none).
import { and, eq, ne } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { derivationOutputs } from '../db/schema.js';
import { fixedOutputContentAddress } from '../store/content-address.js';

/**
 * From any derivation with `path` as a fixed output: they all agree, since the output path
 * is computed from the hash (kiln checks every submitted derivation's paths).
 */
export async function contentAddressOf(db: Pick<Database, 'select'>, path: string): Promise<string | undefined> {
  const [fixed] = await db
    .select({ hashAlgo: derivationOutputs.hashAlgo, hash: derivationOutputs.hash })
    .from(derivationOutputs)
    .where(and(eq(derivationOutputs.path, path), ne(derivationOutputs.hash, '')))
    .limit(1);
  return fixed ? fixedOutputContentAddress(fixed.hashAlgo, fixed.hash) : undefined;
}
