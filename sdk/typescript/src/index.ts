// @kiln/sdk: kiln's AdminService client for TypeScript, the generated code of proto/ and
// the small wrapper around it (token, TLS, paging, waiting). The kiln CLI uses it too.
export * from '../../../gen/kiln/v1/admin_pb.js';
export * from '../../../gen/kiln/v1/types_pb.js';
export { createAdminClient, connectAdmin, type AdminClient, type AdminClientOptions, type ConnectOptions } from './admin-client.js';
export { ClientSetupError, resolveAdminToken } from './admin-token.js';
export { FINAL_STATES, listAllBuilds, waitForBuild, type BuildFilter, type WaitOptions } from './builds.js';
