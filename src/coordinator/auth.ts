// Authentication, as one interceptor for every RPC: the admin bearer token for
// AdminService, an agent's id and password for AgentService. Handlers read who called
// from the context values and never check credentials themselves.
import { createHash, timingSafeEqual } from 'node:crypto';
import { Code, ConnectError, createContextKey, type Interceptor } from '@connectrpc/connect';
import { AdminService } from '../../gen/kiln/v1/admin_pb.js';
import { AgentService } from '../../gen/kiln/v1/agent_pb.js';

export const AGENT_ID_HEADER = 'x-kiln-agent-id';
export const AGENT_PASSWORD_HEADER = 'x-kiln-agent-password';

/** The authenticated agent's id, for AgentService handlers. */
export const authenticatedAgent = createContextKey<string | undefined>(undefined, { description: 'authenticated agent id' });

export type AgentPasswordCheck = (agentId: string, password: string) => Promise<boolean>;

function sameSecret(a: string, b: string): boolean {
  // Compare digests so that the comparison takes the same time whatever the lengths.
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}

/**
 * Remembers agents' recently checked credentials for a while: scrypt is slow on
 * purpose, and an agent authenticates every upload call too.
 */
class CredentialCache {
  private readonly entries = new Map<string, number>();
  constructor(private readonly ttlMs: number, private readonly maxEntries = 10_000) {}

  private key(agentId: string, password: string): string {
    return agentId + ':' + createHash('sha256').update(password).digest('base64');
  }

  has(agentId: string, password: string): boolean {
    const k = this.key(agentId, password);
    const until = this.entries.get(k);
    if (until === undefined) return false;
    if (until < Date.now()) {
      this.entries.delete(k);
      return false;
    }
    return true;
  }

  add(agentId: string, password: string): void {
    if (this.entries.size >= this.maxEntries) this.entries.clear();
    this.entries.set(this.key(agentId, password), Date.now() + this.ttlMs);
  }
}

/** AdminService calls that only read: the dashboard's token may make these and no others. */
export const READ_ONLY_ADMIN_METHODS: ReadonlySet<string> = new Set(['GetBuild', 'ListBuilds', 'ListAgents', 'GetQueueSummary']);

export function authInterceptor(opts: { adminToken: string; dashboardToken?: string; checkAgentPassword: AgentPasswordCheck }): Interceptor {
  const cache = new CredentialCache(60_000);
  return (next) => async (req) => {
    if (req.service.typeName === AdminService.typeName) {
      const header = req.header.get('authorization') ?? '';
      const match = /^Bearer\s+(.+)$/i.exec(header);
      if (!match) {
        throw new ConnectError('missing admin token: send "authorization: Bearer <token>" (the CLI reads KILN_ADMIN_TOKEN)', Code.Unauthenticated);
      }
      const token = match[1]!.trim();
      if (sameSecret(token, opts.adminToken)) return next(req);
      if (opts.dashboardToken && sameSecret(token, opts.dashboardToken)) {
        if (READ_ONLY_ADMIN_METHODS.has(req.method.name)) return next(req);
        throw new ConnectError(`the dashboard token only reads; ${req.method.name} needs the admin token`, Code.PermissionDenied);
      }
      throw new ConnectError('wrong admin token', Code.Unauthenticated);
    }
    if (req.service.typeName === AgentService.typeName) {
      const agentId = req.header.get(AGENT_ID_HEADER) ?? '';
      const password = req.header.get(AGENT_PASSWORD_HEADER) ?? '';
      if (!agentId || !password) {
        throw new ConnectError(`missing agent credentials: send ${AGENT_ID_HEADER} and ${AGENT_PASSWORD_HEADER}`, Code.Unauthenticated);
      }
      if (!cache.has(agentId, password)) {
        if (!(await opts.checkAgentPassword(agentId, password))) {
          throw new ConnectError(`wrong id or password for agent ${agentId}`, Code.Unauthenticated);
        }
        cache.add(agentId, password);
      }
      req.contextValues.set(authenticatedAgent, agentId);
      return next(req);
    }
    throw new ConnectError(`unknown service ${req.service.typeName}`, Code.Unimplemented);
  };
}
