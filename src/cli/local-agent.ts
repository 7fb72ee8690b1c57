// The farm of one for newcomers: an agent beside the coordinator in the same process,
// created once and remembered (id and password in the data directory, mode 0600).
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../agent/agent.js';
import { NixBuilder } from '../agent/builders/nix.js';
import { createAgent, createAgentPassword, getAgent } from '../coordinator/agent-registry.js';
import type { Coordinator } from '../coordinator/coordinator.js';
import type { Logger } from '../logger.js';
import type { Tag } from '../scheduler/tags.js';
import { agentFeatures, agentStateDir, hostSystem } from './commands/agent-run.js';

interface LocalAgentCredentials {
  id: string;
  password: string;
}

async function credentials(coordinator: Coordinator, dataDir: string): Promise<LocalAgentCredentials> {
  const file = join(dataDir, 'local-agent.json');
  try {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as LocalAgentCredentials;
    await getAgent(coordinator.database.db, saved.id); // still in this database?
    return saved;
  } catch {
    const agent = await createAgent(coordinator.database.db, { name: 'local', tags: [] });
    const password = await createAgentPassword(coordinator.database.db, agent.id);
    writeFileSync(file, JSON.stringify({ id: agent.id, password }) + '\n', { mode: 0o600 });
    return { id: agent.id, password };
  }
}

/** Starts the local agent, or says why not (no Nix on this machine) and returns undefined. */
export async function startLocalAgent(coordinator: Coordinator, dataDir: string, log: Logger, tags: Tag[] = []): Promise<Agent | undefined> {
  if (spawnSync('nix-store', ['--version']).status !== 0) {
    log.warn('no Nix on this machine (nix-store not found): running without a local agent');
    return undefined;
  }
  const { id, password } = await credentials(coordinator, dataDir);
  const features = agentFeatures({});
  // Its Nix's narinfo cache lives beside the coordinator's data, not in the user's ~/.cache.
  const cacheHome = join(agentStateDir(id, join(dataDir, 'local-agent')), 'cache');
  const agent = new Agent({
    coordinatorUrls: [coordinator.url],
    agentId: id,
    password,
    systems: [hostSystem()],
    maxParallel: 1,
    // Offered in its Hello (`--local-agent-tag`), so they change with the flags of each start.
    tags,
    features,
    builder: (cache) => new NixBuilder({ cache, settings: { cacheHome, systemFeatures: features.supported } }),
    log: log.child({ agent: 'local' }),
  });
  agent.start();
  return agent;
}
