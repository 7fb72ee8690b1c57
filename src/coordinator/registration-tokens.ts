// Registration tokens (the Guix Build Coordinator's agent-dynamic-auth): an operator makes
// one, and an agent holding it registers itself once, getting an id, a password and the
// token's tags. A revoked or expired token registers nothing.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { asc, eq, sql } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { agentPasswords, agentRegistrationTokens, agents, agentTags } from '../db/schema.js';
import { invalidArgument, KilnError, notFound } from '../errors.js';
import { DEFAULT_INPUT_LIMITS } from '../protocol/limits.js';
import { validateTags, type Tag } from '../scheduler/tags.js';
import { isUuid } from '../uuid.js';
import { generatePassword, hashPassword } from './passwords.js';

export interface RegistrationTokenRecord {
  id: string;
  tags: Tag[];
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  registrations: number;
}

/** What a token is looked up by: its secret is random enough that SHA-256 suffices. */
function tokenHash(secret: string): string {
  return createHash('sha256').update(secret.trim()).digest('hex');
}

function toRecord(row: typeof agentRegistrationTokens.$inferSelect): RegistrationTokenRecord {
  return { id: row.id, tags: row.tags, createdAt: row.createdAt, expiresAt: row.expiresAt, revokedAt: row.revokedAt, registrations: row.registrations };
}

/** Makes a token; returns it with its secret, which is shown only this once. */
export async function createRegistrationToken(
  db: Database,
  input: { tags: Tag[]; expiresAt?: Date },
  now: Date = new Date(),
): Promise<{ token: RegistrationTokenRecord; secret: string }> {
  validateTags(input.tags, 'registration token', DEFAULT_INPUT_LIMITS.tagsPerAgent, 'tagsPerAgent');
  if (input.expiresAt && input.expiresAt <= now) throw invalidArgument(`the token would expire at ${input.expiresAt.toISOString()}, which has passed`);
  const secret = `kiln-reg-${randomBytes(32).toString('hex')}`;
  const [row] = await db
    .insert(agentRegistrationTokens)
    .values({ id: randomUUID(), hash: tokenHash(secret), tags: input.tags.map(({ key, value }) => ({ key, value })), expiresAt: input.expiresAt ?? null })
    .returning();
  return { token: toRecord(row!), secret };
}

export async function listRegistrationTokens(db: Database): Promise<RegistrationTokenRecord[]> {
  const rows = await db.select().from(agentRegistrationTokens).orderBy(asc(agentRegistrationTokens.createdAt), asc(agentRegistrationTokens.id));
  return rows.map(toRecord);
}

/** Revokes a token (again is harmless: the first revocation's time stays). */
export async function revokeRegistrationToken(db: Database, id: string, now: Date = new Date()): Promise<RegistrationTokenRecord> {
  if (!isUuid(id)) throw notFound(`no registration token with id ${id}`);
  const [row] = await db
    .update(agentRegistrationTokens)
    .set({ revokedAt: sql`coalesce(${agentRegistrationTokens.revokedAt}, ${now.toISOString()}::timestamptz)` })
    .where(eq(agentRegistrationTokens.id, id))
    .returning();
  if (!row) throw notFound(`no registration token with id ${id}`);
  return toRecord(row);
}

/** Why the token cannot register an agent, or undefined when it can. */
function refusal(row: typeof agentRegistrationTokens.$inferSelect | undefined, now: Date): KilnError | undefined {
  if (!row) return new KilnError('unauthenticated', 'unknown registration token: make one with `kiln agent token new`');
  if (row.revokedAt) return new KilnError('permission_denied', `registration token ${row.id} was revoked at ${row.revokedAt.toISOString()}`);
  if (row.expiresAt && row.expiresAt <= now) return new KilnError('permission_denied', `registration token ${row.id} expired at ${row.expiresAt.toISOString()}`);
  return undefined;
}

/** Whether the token may register an agent now (for the check at the request's edge). */
export async function checkRegistrationToken(db: Database, secret: string, now: Date = new Date()): Promise<KilnError | undefined> {
  const [row] = await db.select().from(agentRegistrationTokens).where(eq(agentRegistrationTokens.hash, tokenHash(secret)));
  return refusal(row, now);
}

/**
 * Registers a new agent with the token: its id, its password (in the clear, once) and
 * the token's tags. The token's row is locked, so that a revocation either comes first
 * and nothing is registered, or after.
 */
export async function registerAgent(
  db: Database,
  secret: string,
  name: string,
  now: Date = new Date(),
): Promise<{ agentId: string; password: string; tags: Tag[] }> {
  if (!name.trim()) throw invalidArgument('an agent registers with a name (kiln agent run --name N)');
  const password = generatePassword();
  const hash = await hashPassword(password);
  const agentId = randomUUID();
  const tags = await db.transaction(async (tx) => {
    const [row] = await tx.select().from(agentRegistrationTokens).where(eq(agentRegistrationTokens.hash, tokenHash(secret))).for('update');
    const refused = refusal(row, now);
    if (refused) throw refused;
    await tx.insert(agents).values({ id: agentId, name });
    await tx.insert(agentPasswords).values({ agentId, hash });
    if (row!.tags.length > 0) await tx.insert(agentTags).values(row!.tags.map((t) => ({ agentId, key: t.key, value: t.value })));
    await tx.update(agentRegistrationTokens).set({ registrations: sql`${agentRegistrationTokens.registrations} + 1` }).where(eq(agentRegistrationTokens.id, row!.id));
    return row!.tags;
  });
  return { agentId, password, tags };
}
