// Where a client finds the admin token: KILN_ADMIN_TOKEN, or on the coordinator's own
// machine the file the coordinator wrote into its data directory at its first start.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultDataDir } from '../../../src/config.js';
import { ADMIN_TOKEN_FILE } from '../../../src/protocol/credentials.js';

/**
 * The client cannot be made as asked: no token given and none found (the message says
 * both ways to give one), or a CA certificate that cannot be read or does not apply.
 */
export class ClientSetupError extends Error {
  override name = 'ClientSetupError';
}

export function resolveAdminToken(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KILN_ADMIN_TOKEN) return env.KILN_ADMIN_TOKEN.trim();
  const path = join(defaultDataDir(env), ADMIN_TOKEN_FILE);
  let token = '';
  try {
    token = readFileSync(path, 'utf8').trim();
  } catch {
    // Missing or unreadable: the message below says where it was looked for.
  }
  if (token) return token;
  // Both ways, since a second shell rarely has the coordinator's KILN_DATA_DIR.
  const where = env.KILN_DATA_DIR ? `KILN_DATA_DIR=${env.KILN_DATA_DIR}` : 'KILN_DATA_DIR is not set';
  throw new ClientSetupError(
    `no admin token: none in KILN_ADMIN_TOKEN, and no file ${path} (${where}). Either set KILN_ADMIN_TOKEN to the token, ` +
      `or set KILN_DATA_DIR to the coordinator's data directory (--data-dir, or its KILN_DATA_DIR), where it wrote the token to the file ${ADMIN_TOKEN_FILE} at its first start`,
  );
}
