// AgentService.Register: the request's edge (auth.ts) already checked the registration
// token; this registers the agent, checking the token again under a lock of its row.
import type { ServiceImpl } from '@connectrpc/connect';
import type { AgentService } from '../../gen/kiln/v1/agent_pb.js';
import type { Database } from '../db/connection.js';
import type { Logger } from '../logger.js';
import { REGISTRATION_TOKEN_HEADER } from '../protocol/credentials.js';
import { registerAgent } from './registration-tokens.js';

export function agentRegistration(db: Database, log: Logger): Pick<ServiceImpl<typeof AgentService>, 'register'> {
  return {
    async register(req, ctx) {
      const secret = ctx.requestHeader.get(REGISTRATION_TOKEN_HEADER) ?? '';
      const registered = await registerAgent(db, secret, req.name);
      log.info({ agentId: registered.agentId, name: req.name }, 'agent registered itself');
      return registered;
    },
  };
}
