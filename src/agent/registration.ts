// An agent that registers itself: with a registration token it asks the coordinator once
// for an id and a password, keeps them in a credentials file of its own (mode 0600), and
// on every later start reads them from there instead of registering again.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { createClient, type Interceptor } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { AgentService } from '../../gen/kiln/v1/agent_pb.js';
import { REGISTRATION_TOKEN_HEADER } from '../protocol/credentials.js';

export interface AgentCredentials {
  agentId: string;
  password: string;
}

/** The credentials in the file, or undefined when there is no file yet. */
export function readCredentials(path: string): AgentCredentials | undefined {
  if (!existsSync(path)) return undefined;
  let parsed: Partial<AgentCredentials>;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<AgentCredentials>;
  } catch (err) {
    throw new Error(`the agent's credentials file ${path} is not JSON (${(err as Error).message}); remove it to register again`, { cause: err });
  }
  if (typeof parsed.agentId !== 'string' || typeof parsed.password !== 'string' || !parsed.agentId || !parsed.password) {
    throw new Error(`the agent's credentials file ${path} lacks agentId or password; remove it to register again`);
  }
  return { agentId: parsed.agentId, password: parsed.password };
}

/** Writes the file whole or not at all, readable by its owner only. */
export function writeCredentials(path: string, credentials: AgentCredentials): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, JSON.stringify(credentials, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  renameSync(temporary, path);
}

/** Asks the coordinator for a new agent; the token is the call's only credential. */
export async function register(coordinatorUrl: string, token: string, name: string): Promise<AgentCredentials> {
  const withToken: Interceptor = (next) => (req) => {
    req.header.set(REGISTRATION_TOKEN_HEADER, token);
    return next(req);
  };
  const client = createClient(AgentService, createGrpcTransport({ baseUrl: coordinatorUrl, interceptors: [withToken] }));
  const { agentId, password } = await client.register({ name });
  return { agentId, password };
}

/** The agent's credentials: those in the file, else new ones registered with the token file's token and kept there. */
export async function credentialsByRegistration(opts: { coordinatorUrl: string; tokenFile: string; name: string; credentialsFile: string }): Promise<AgentCredentials & { registered: boolean }> {
  const kept = readCredentials(opts.credentialsFile);
  if (kept) return { ...kept, registered: false };
  let token: string;
  try {
    token = readFileSync(opts.tokenFile, 'utf8').trim();
  } catch (err) {
    throw new Error(`cannot read the registration token file ${opts.tokenFile}: ${(err as Error).message}`, { cause: err });
  }
  if (!token) throw new Error(`the registration token file ${opts.tokenFile} is empty`);
  const credentials = await register(opts.coordinatorUrl, token, opts.name);
  writeCredentials(opts.credentialsFile, credentials);
  return { ...credentials, registered: true };
}
