// Agents as the coordinator records them: creation, passwords, tags, and checking an
// agent's credentials.
import { randomUUID } from 'node:crypto';
import { asc, count, eq } from 'drizzle-orm';
import type { Database } from '../db/connection.js';
import { agentPasswords, agents, agentTags } from '../db/schema.js';
import { notFound } from '../errors.js';
import { validateTags, type Tag } from '../scheduler/tags.js';
import { DEFAULT_INPUT_LIMITS } from '../protocol/limits.js';
import { isUuid } from '../uuid.js';
import { generatePassword, hashPassword, verifyPassword } from './passwords.js';

export interface AgentRecord {
  id: string;
  name: string;
  active: boolean;
  tags: Tag[];
  createdAt: Date;
  passwordCount: number;
}

export async function createAgent(db: Database, input: { name: string; tags: Tag[] }): Promise<AgentRecord> {
  validateTags(input.tags, 'agent', DEFAULT_INPUT_LIMITS.tagsPerAgent, 'tagsPerAgent');
  const id = randomUUID();
  await db.transaction(async (tx) => {
    await tx.insert(agents).values({ id, name: input.name });
    if (input.tags.length > 0) await tx.insert(agentTags).values(input.tags.map((t) => ({ agentId: id, ...t })));
  });
  return getAgent(db, id);
}

export async function getAgent(db: Database, id: string): Promise<AgentRecord> {
  const found = await listAgents(db, id);
  if (!found[0]) throw notFound(`no agent with id ${id}`);
  return found[0];
}

export async function listAgents(db: Database, onlyId?: string): Promise<AgentRecord[]> {
  if (onlyId !== undefined && !isUuid(onlyId)) return [];
  const rows = await db
    .select()
    .from(agents)
    .where(onlyId ? eq(agents.id, onlyId) : undefined)
    .orderBy(asc(agents.createdAt), asc(agents.id));
  if (rows.length === 0) return [];
  const tags = await db.select().from(agentTags).where(onlyId ? eq(agentTags.agentId, onlyId) : undefined);
  const counts = await db
    .select({ agentId: agentPasswords.agentId, n: count() })
    .from(agentPasswords)
    .where(onlyId ? eq(agentPasswords.agentId, onlyId) : undefined)
    .groupBy(agentPasswords.agentId);
  const countOf = new Map(counts.map((c) => [c.agentId, Number(c.n)]));
  return rows.map((a) => ({
    id: a.id,
    name: a.name,
    active: a.active,
    createdAt: a.createdAt,
    tags: tags.filter((t) => t.agentId === a.id).map(({ key, value }) => ({ key, value })),
    passwordCount: countOf.get(a.id) ?? 0,
  }));
}

/** Makes a new password for the agent; returns it in the clear, once. */
export async function createAgentPassword(db: Database, agentId: string): Promise<string> {
  await getAgent(db, agentId);
  const password = generatePassword();
  await db.insert(agentPasswords).values({ agentId, hash: await hashPassword(password) });
  return password;
}

/** True when the password is one of the agent's. Unknown agents and bad ids are just false. */
export async function checkAgentPassword(db: Database, agentId: string, password: string): Promise<boolean> {
  if (!isUuid(agentId) || !password) return false;
  const rows = await db.select({ hash: agentPasswords.hash }).from(agentPasswords).where(eq(agentPasswords.agentId, agentId));
  for (const row of rows) if (await verifyPassword(password, row.hash)) return true;
  return false;
}

/** Activates or deactivates an agent; a deactivated one is given no builds. */
export async function setAgentActive(db: Database, agentId: string, active: boolean): Promise<AgentRecord> {
  await getAgent(db, agentId);
  await db.update(agents).set({ active }).where(eq(agents.id, agentId));
  return getAgent(db, agentId);
}
