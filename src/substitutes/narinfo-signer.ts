// Signing narinfos ahead of requests: a path is signed when it is committed (the signer
// given to uploads and submissions), and the background signer signs, in bounded
// batches at start, what no commit signed under the current keys: paths of a database
// older than stored signatures, and every path after a key change.
import { and, eq, gt, isNull, lt, or, sql } from 'drizzle-orm';
import { Backoff, delay, type BackoffOptions } from '../backoff.js';
import type { Database } from '../db/connection.js';
import { pendingOutputs, storePaths } from '../db/schema.js';
import type { CacheKeys } from './cache-keys.js';
import { signNarInfoFields, type NarInfoSignatures } from './narinfo-text.js';

/** The fields a narinfo signature covers. */
export interface SignedFields {
  path: string;
  narHash: string;
  narSize: number;
  references: string[];
  deriver?: string;
}

/** Signs a path about to be committed; what a store_paths (or pending_outputs) row stores. */
export type PathSigner = (fields: SignedFields) => NarInfoSignatures;

export function pathSigner(keys: CacheKeys): PathSigner {
  return (fields) => signNarInfoFields({ ...fields, deriver: fields.deriver ?? '' }, keys);
}

export interface BackfillOptions {
  /** Rows signed per transaction (each Guix signature costs about a millisecond). */
  batch?: number;
  signal?: AbortSignal;
}

// Not signed by `fingerprint`: null, or another key. Two ranges rather than `<>` so that
// the signature_key index serves it.
const notSignedBy = (column: typeof storePaths.signatureKey | typeof pendingOutputs.signatureKey, fingerprint: string) =>
  or(isNull(column), lt(column, fingerprint), gt(column, fingerprint));

/**
 * Signs every stored path (and pending output) not signed by the current keys, a batch
 * at a time, yielding to the event loop between rows; returns how many it signed. A row
 * that changed meanwhile (collected and uploaded again) keeps what its commit stored.
 */
export async function signUnsigned(db: Database, keys: CacheKeys, opts: BackfillOptions = {}): Promise<number> {
  const batch = opts.batch ?? 100;
  let signed = 0;
  for (const table of [storePaths, pendingOutputs] as const) {
    for (;;) {
      opts.signal?.throwIfAborted();
      // Signed rows leave the condition, so each batch reads the next ones.
      const rows = await db
        .select({ path: table.path, narHash: table.narHash, narSize: table.narSize, references: table.references, deriver: table.deriver })
        .from(table)
        .where(notSignedBy(table.signatureKey, keys.fingerprint))
        .limit(batch);
      let updated = 0;
      for (const row of rows) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        const signatures = signNarInfoFields(row, keys);
        const done = await db
          .update(table)
          .set(signatures)
          .where(
            and(
              eq(table.path, row.path),
              eq(table.narHash, row.narHash),
              eq(table.deriver, row.deriver),
              sql`${table.references} = ${sql.param(row.references)}::text[]`,
              notSignedBy(table.signatureKey, keys.fingerprint),
            ),
          )
          .returning({ path: table.path });
        updated += done.length;
      }
      signed += updated;
      if (rows.length < batch || updated === 0) break;
    }
  }
  return signed;
}

/** How long the backfill waits before it tries again after a failure (a database out of reach). */
export const BACKFILL_RETRY: BackoffOptions = { initialMs: 1_000, maxMs: 60_000 };

/**
 * The backfill at start, in the background: `done` resolves with how many paths it
 * signed (0 when it was stopped first). A path without current signatures is a miss
 * until it is signed, so a failure (the database down at start) is logged and tried
 * again with backoff while the coordinator runs, not left to the next start.
 */
export function startSignatureBackfill(
  db: Database,
  keys: CacheKeys,
  log: { info(o: object, m: string): void; error(o: object, m: string): void },
  retry: BackoffOptions = BACKFILL_RETRY,
): { done: Promise<number>; stop(): Promise<void> } {
  const abort = new AbortController();
  const backoff = new Backoff(retry);
  const run = async (): Promise<number> => {
    for (;;) {
      try {
        const signed = await signUnsigned(db, keys, { signal: abort.signal });
        if (signed > 0) log.info({ signed }, 'signed the narinfos of paths stored without current signatures');
        return signed;
      } catch (err) {
        if (abort.signal.aborted) return 0;
        const waitMs = backoff.next();
        log.error({ err, retryInMs: waitMs }, 'narinfo signature backfill failed; trying again');
        const stopped = await delay(waitMs, abort.signal).then(() => false, () => true);
        if (stopped) return 0;
      }
    }
  };
  const done = run();
  return {
    done,
    async stop() {
      abort.abort();
      await done;
    },
  };
}
