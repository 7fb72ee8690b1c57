// `kiln agent …`: create agents, give them passwords, list them.
import { adminClientFor } from '../admin-client.js';
import { agentJson, agentLine, printJson } from '../output.js';
import { CLIENT_OPTIONS, exactlyOne, parse, tagsFrom } from '../options.js';
import { UsageError } from '../usage-error.js';
import { runAgentCommand } from './agent-run.js';
import { agentTokenCommand } from './agent-token.js';

export async function agentCommand(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'new': {
      const { values, positionals } = parse(rest, { ...CLIENT_OPTIONS, name: { type: 'string', default: '' }, tag: { type: 'string', multiple: true } });
      if (positionals.length) throw new UsageError(`kiln agent new takes no arguments, got ${positionals.join(' ')}`);
      const client = adminClientFor(values);
      const { agent } = await client.createAgent({ name: values.name, tags: tagsFrom(values.tag) });
      if (values.json) printJson(agentJson(agent!));
      else console.log(agent!.id);
      return;
    }
    case 'password': {
      const { values, positionals } = parse(rest, CLIENT_OPTIONS);
      const agentId = exactlyOne(positionals, 'agent id');
      const client = adminClientFor(values);
      const { password } = await client.createAgentPassword({ agentId });
      if (values.json) printJson({ agentId, password });
      else console.log(password);
      return;
    }
    case 'list': {
      const { values, positionals } = parse(rest, CLIENT_OPTIONS);
      if (positionals.length) throw new UsageError('kiln agent list takes no arguments');
      const client = adminClientFor(values);
      const { agents } = await client.listAgents({});
      if (values.json) printJson(agents.map(agentJson));
      else for (const a of agents) console.log(agentLine(a));
      return;
    }
    case 'drain':
    case 'activate':
    case 'deactivate': {
      const { values, positionals } = parse(rest, CLIENT_OPTIONS);
      const agentId = exactlyOne(positionals, 'agent id');
      const client = adminClientFor(values);
      if (sub === 'drain') {
        await client.drainAgent({ agentId });
        if (values.json) return printJson({ agentId, draining: true });
        console.log(`agent ${agentId} told to drain: it finishes its builds, takes no more, and stops`);
        return;
      }
      const { agent } = await client.setAgentActive({ agentId, active: sub === 'activate' });
      console.log(values.json ? JSON.stringify(agentJson(agent!), null, 2) : agentLine(agent!));
      return;
    }
    case 'run':
      return runAgentCommand(rest);
    case 'token':
      return agentTokenCommand(rest);
    default:
      throw new UsageError(`unknown agent command ${JSON.stringify(sub ?? '')}: use new, password, list, drain, activate, deactivate, run or token`);
  }
}
