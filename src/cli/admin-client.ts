// The CLI's connection to the coordinator's AdminService, with the admin token from
// KILN_ADMIN_TOKEN or, on the coordinator's own machine, its data dir.
import { readFileSync } from 'node:fs';
import { createAdminClient, type AdminClient } from '../client/admin-client.js';
import { ADMIN_TOKEN_FILE, adminTokenPath } from '../coordinator/admin-token.js';
import { coordinatorUrl, defaultDataDir } from '../config.js';
import { UsageError } from './usage-error.js';

export function resolveAdminToken(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KILN_ADMIN_TOKEN) return env.KILN_ADMIN_TOKEN.trim();
  const path = adminTokenPath(defaultDataDir(env));
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    // Both ways, since a second shell rarely has the coordinator's KILN_DATA_DIR.
    const where = env.KILN_DATA_DIR ? `KILN_DATA_DIR=${env.KILN_DATA_DIR}` : 'KILN_DATA_DIR is not set';
    throw new UsageError(
      `no admin token: none in KILN_ADMIN_TOKEN, and no file ${path} (${where}). Either set KILN_ADMIN_TOKEN to the token, ` +
        `or set KILN_DATA_DIR to the coordinator's data directory (--data-dir, or its KILN_DATA_DIR), where it wrote the token to the file ${ADMIN_TOKEN_FILE} at its first start`,
    );
  }
}

/** The client a CLI command uses: `--coordinator` (or KILN_COORDINATOR) and the resolved token. */
export function adminClientFor(values: { coordinator?: string }): AdminClient {
  return createAdminClient(coordinatorUrl(values.coordinator), resolveAdminToken());
}
