// A coordinator (PGlite) and one `kiln agent run --builder local` process, for the tests
// of one describe block that drive real builds through a client of their own.
import { afterAll, beforeAll } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgentProcess, type AgentProcess } from './agent-process.js';
import { startTestCoordinator, type TestCoordinator } from './coordinator.js';

export interface LocalFarm {
  t: TestCoordinator;
  /** A temporary directory (the agent's store is root/store), removed afterwards. */
  root: string;
  agent: AgentProcess;
}

export function useLocalFarm(name: string, agentArgs: string[] = []): () => LocalFarm {
  let farm: LocalFarm | undefined;
  beforeAll(async () => {
    const t = await startTestCoordinator('pglite');
    const root = mkdtempSync(join(tmpdir(), `kiln-${name}-`));
    const { agent } = await t.admin.createAgent({ name });
    const { password } = await t.admin.createAgentPassword({ agentId: agent!.id });
    farm = { t, root, agent: startAgentProcess({ coordinatorUrl: t.coordinator.url, id: agent!.id, password, store: join(root, 'store'), builder: 'local', extraArgs: agentArgs }) };
  }, 180_000);
  afterAll(async () => {
    if (!farm) return;
    await farm.agent.stop();
    await farm.t.stop();
    rmSync(farm.root, { recursive: true, force: true });
  });
  return () => {
    if (!farm) throw new Error('the coordinator and its agent are not started');
    return farm;
  };
}
