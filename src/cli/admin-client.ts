// The CLI's connection to the coordinator's AdminService: the SDK's (sdk/typescript), with
// the coordinator from --coordinator, and its setup errors (no admin token) as the CLI's usage errors.
import { ClientSetupError, connectAdmin, type AdminClient } from '../../sdk/typescript/src/index.js';
import { UsageError } from './usage-error.js';

export type { AdminClient };

/** The client a CLI command uses: `--coordinator` (or KILN_COORDINATOR) and the resolved token. */
export function adminClientFor(values: { coordinator?: string }): AdminClient {
  try {
    return connectAdmin({ coordinator: values.coordinator });
  } catch (err) {
    if (err instanceof ClientSetupError) throw new UsageError(err.message);
    throw err;
  }
}
