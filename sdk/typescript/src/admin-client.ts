// An AdminService client over gRPC (HTTP/2): the bearer token on every call, and for an
// https:// coordinator with a certificate of its own, the CA to trust.
import { readFileSync } from 'node:fs';
import { createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { AdminService } from '../../../gen/kiln/v1/admin_pb.js';
import { coordinatorUrl } from '../../../src/config.js';
import { ClientSetupError, resolveAdminToken } from './admin-token.js';

export type AdminClient = Client<typeof AdminService>;

export interface AdminClientOptions {
  /** PEM certificate(s) to trust instead of the system's, for an https:// coordinator. */
  ca?: string | Buffer;
}

export function createAdminClient(baseUrl: string, token: string, opts: AdminClientOptions = {}): AdminClient {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set('authorization', `Bearer ${token}`);
    return next(req);
  };
  const transport = createGrpcTransport({ baseUrl, interceptors: [bearer], nodeOptions: opts.ca ? { ca: opts.ca } : undefined });
  return createClient(AdminService, transport);
}

export interface ConnectOptions {
  /** Else KILN_COORDINATOR, else http://127.0.0.1:8745. */
  coordinator?: string;
  /** Else KILN_ADMIN_TOKEN, else the coordinator's token file (see resolveAdminToken). */
  token?: string;
  /** A PEM file of the CA to trust for https://; else KILN_TLS_CA. */
  caFile?: string;
  env?: NodeJS.ProcessEnv;
}

/** The client a script (or the kiln CLI) uses: address, token and CA as given or from the environment. */
export function connectAdmin(opts: ConnectOptions = {}): AdminClient {
  const env = opts.env ?? process.env;
  const url = coordinatorUrl(opts.coordinator, env);
  const token = opts.token ?? resolveAdminToken(env);
  const caFile = opts.caFile ?? env.KILN_TLS_CA;
  let ca: Buffer | undefined;
  if (caFile) {
    if (!url.startsWith('https:')) throw new ClientSetupError(`a CA certificate (${caFile}) was given for ${url}, which is not https://`);
    try {
      ca = readFileSync(caFile);
    } catch (err) {
      throw new ClientSetupError(`cannot read the CA certificate ${caFile}: ${(err as Error).message}`, { cause: err });
    }
  }
  return createAdminClient(url, token, { ca });
}
