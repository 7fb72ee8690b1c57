// The CLI's connection to the coordinator's AdminService: gRPC over HTTP/2, with the
// admin token from KILN_ADMIN_TOKEN or, on the coordinator's own machine, its data dir.
import { readFileSync } from 'node:fs';
import { createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { AdminService } from '../../gen/kiln/v1/admin_pb.js';
import { adminTokenPath } from '../coordinator/admin-token.js';
import { defaultDataDir } from '../config.js';
import { UsageError } from './usage-error.js';

export type AdminClient = Client<typeof AdminService>;

export function resolveAdminToken(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KILN_ADMIN_TOKEN) return env.KILN_ADMIN_TOKEN.trim();
  const path = adminTokenPath(defaultDataDir(env));
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    throw new UsageError(`no admin token: set KILN_ADMIN_TOKEN (the coordinator wrote one to ${path} at its first start)`);
  }
}

export function createAdminClient(baseUrl: string, token: string): AdminClient {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set('authorization', `Bearer ${token}`);
    return next(req);
  };
  const transport = createGrpcTransport({ baseUrl, interceptors: [bearer] });
  return createClient(AdminService, transport);
}
