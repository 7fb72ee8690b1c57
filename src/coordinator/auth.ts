// Authentication, checked from a request's headers before its body is read: the admin
// bearer token for AdminService, an agent's id and password for AgentService. A caller
// without credentials makes the coordinator read nothing more than the headers; handlers
// read who called from the context values and never check credentials themselves.
import { createHash, timingSafeEqual } from 'node:crypto';
import { Code, ConnectError, createContextKey } from '@connectrpc/connect';
import { AdminService } from '../../gen/kiln/v1/admin_pb.js';
import { AgentService } from '../../gen/kiln/v1/agent_pb.js';
import { AGENT_ID_HEADER, AGENT_PASSWORD_HEADER, REGISTRATION_TOKEN_HEADER } from '../protocol/credentials.js';
import type { KilnError } from '../errors.js';
import { refusalError } from './connect-errors.js';
import { LoginThrottle } from './login-throttle.js';

export { AGENT_ID_HEADER, AGENT_PASSWORD_HEADER };

/** The authenticated agent's id, for AgentService handlers. */
export const authenticatedAgent = createContextKey<string | undefined>(undefined, { description: 'authenticated agent id' });

export type AgentPasswordCheck = (agentId: string, password: string) => Promise<boolean>;
/** Why a registration token may not register an agent now, or undefined when it may. */
export type RegistrationTokenCheck = (secret: string) => Promise<KilnError | undefined>;

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
export const READ_ONLY_ADMIN_METHODS: ReadonlySet<string> = new Set(['GetBuild', 'GetBuildLog', 'ListBuilds', 'ListAgents', 'GetQueueSummary', 'ListFixedOutputChecks', 'GetBuildRelations', 'GetFarmHistory']);

export interface CallCredentials {
  /** The service's type name and the method's name, from the request path. */
  service: string;
  method: string;
  header: (name: string) => string | undefined;
  /** The peer's address, so that password guesses from one place are slowed. */
  peer: string;
}

export interface AuthenticatorOptions {
  adminToken: string;
  dashboardToken?: string;
  checkAgentPassword: AgentPasswordCheck;
  checkRegistrationToken?: RegistrationTokenCheck;
  throttle?: LoginThrottle;
}

/** Decides whether a call may go on; returns the agent's id for AgentService calls. */
export class Authenticator {
  private readonly cache = new CredentialCache(60_000);
  readonly throttle: LoginThrottle;

  constructor(private readonly opts: AuthenticatorOptions) {
    this.throttle = opts.throttle ?? new LoginThrottle();
  }

  /** Throws a ConnectError (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED) to refuse. */
  async authenticate(call: CallCredentials): Promise<string | undefined> {
    if (call.service === AdminService.typeName) {
      const match = /^Bearer\s+(.+)$/i.exec(call.header('authorization') ?? '');
      if (!match) {
        throw new ConnectError('missing admin token: send "authorization: Bearer <token>" (the CLI reads KILN_ADMIN_TOKEN)', Code.Unauthenticated);
      }
      this.throttle.check([`peer:${call.peer}`], 'admin token');
      const token = match[1]!.trim();
      if (sameSecret(token, this.opts.adminToken)) return undefined;
      if (this.opts.dashboardToken && sameSecret(token, this.opts.dashboardToken)) {
        if (READ_ONLY_ADMIN_METHODS.has(call.method)) return undefined;
        throw new ConnectError(`the dashboard token only reads; ${call.method} needs the admin token`, Code.PermissionDenied);
      }
      this.throttle.failed([`peer:${call.peer}`]);
      throw new ConnectError('wrong admin token', Code.Unauthenticated);
    }
    if (call.service === AgentService.typeName && call.method === 'Register') {
      await this.registrationToken(call);
      return undefined;
    }
    if (call.service === AgentService.typeName) {
      const agentId = call.header(AGENT_ID_HEADER) ?? '';
      const password = call.header(AGENT_PASSWORD_HEADER) ?? '';
      if (!agentId || !password) {
        throw new ConnectError(`missing agent credentials: send ${AGENT_ID_HEADER} and ${AGENT_PASSWORD_HEADER}`, Code.Unauthenticated);
      }
      if (this.cache.has(agentId, password)) return agentId;
      const keys = [`agent:${agentId}`, `peer:${call.peer}`];
      this.throttle.check(keys, `agent ${agentId}`);
      if (!(await this.opts.checkAgentPassword(agentId, password))) {
        this.throttle.failed(keys);
        throw new ConnectError(`wrong id or password for agent ${agentId}`, Code.Unauthenticated);
      }
      this.throttle.succeeded([`agent:${agentId}`]);
      this.cache.add(agentId, password);
      return agentId;
    }
    throw new ConnectError(`unknown service ${call.service}`, Code.Unimplemented);
  }

  /** Register's only credential: a registration token, its guesses slowed like passwords'. */
  private async registrationToken(call: CallCredentials): Promise<void> {
    const secret = (call.header(REGISTRATION_TOKEN_HEADER) ?? '').trim();
    if (!secret) throw new ConnectError(`missing registration token: send ${REGISTRATION_TOKEN_HEADER} (kiln agent run --register-token FILE)`, Code.Unauthenticated);
    const keys = [`peer:${call.peer}`];
    this.throttle.check(keys, 'registration');
    const refused = this.opts.checkRegistrationToken ? await this.opts.checkRegistrationToken(secret) : undefined;
    if (!this.opts.checkRegistrationToken || refused) {
      this.throttle.failed(keys);
      throw refused ? refusalError(refused)! : new ConnectError('this coordinator registers no agents', Code.Unimplemented);
    }
  }
}
