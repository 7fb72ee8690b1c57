// Defaults shared by the coordinator and the CLI, and where their environment
// variables are read.
import { homedir } from 'node:os';
import { join } from 'node:path';

export const DEFAULT_COORDINATOR_URL = 'http://127.0.0.1:8745';

/** $KILN_DATA_DIR, else $XDG_DATA_HOME/kiln, else ~/.local/share/kiln. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KILN_DATA_DIR) return env.KILN_DATA_DIR;
  const base = env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(base, 'kiln');
}

export function coordinatorUrl(given: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return given || env.KILN_COORDINATOR || DEFAULT_COORDINATOR_URL;
}
