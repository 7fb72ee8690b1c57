// A client of the coordinator's AdminService: gRPC over HTTP/2 with the admin token as a
// bearer credential. The one way in for the CLI and for hooks that call back into the
// coordinator; where the token comes from is the caller's business.
import { createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { AdminService } from '../../gen/kiln/v1/admin_pb.js';

export type AdminClient = Client<typeof AdminService>;

export function createAdminClient(baseUrl: string, token: string): AdminClient {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set('authorization', `Bearer ${token}`);
    return next(req);
  };
  const transport = createGrpcTransport({ baseUrl, interceptors: [bearer] });
  return createClient(AdminService, transport);
}
