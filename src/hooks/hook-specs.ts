// Operators' hooks as configuration names them, checked and turned into hooks.
import type { AdminClient } from '../client/admin-client.js';
import { commandHook } from './command-hook.js';
import { EVENT_TYPES, type Hook } from './hook.js';
import { moduleHook } from './module-hook.js';

interface CommonSpec {
  name: string;
  /** Event types ('*' for all). */
  events: string[];
  /** Deliveries at once (default 1). */
  concurrency?: number;
  /** Deliveries before an event is parked (default 5). */
  maxAttempts?: number;
  /** Per delivery (default 60 s). */
  timeoutSeconds?: number;
}

export type HookSpec = (CommonSpec & { command: string[]; env?: Record<string, string> }) | (CommonSpec & { module: string });

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/**
 * Checks every spec (naming what is wrong and where) and makes the hooks. `builtIn`: the
 * names of the built-in hooks running beside them, which an operator's hook may take only
 * once the built-in one is turned off.
 */
export async function hooksFromSpecs(specs: HookSpec[], admin: () => AdminClient, builtIn: readonly string[] = []): Promise<Hook[]> {
  const seen = new Set<string>();
  const hooks: Hook[] = [];
  for (const [i, spec] of specs.entries()) {
    const where = `hooks[${i}]${spec.name ? ` (${spec.name})` : ''}`;
    if (!NAME.test(spec.name ?? '')) throw new Error(`${where}: name must be lower-case letters, digits, '.', '_' or '-' (at most 63)`);
    if (seen.has(spec.name)) throw new Error(`${where}: another hook is named ${spec.name}`);
    if (builtIn.includes(spec.name)) {
      throw new Error(`${where}: ${spec.name} is the name of a built-in hook; to replace it, turn it off with builtinHooks: { ${spec.name}: false }`);
    }
    seen.add(spec.name);
    if (!Array.isArray(spec.events) || spec.events.length === 0) throw new Error(`${where}: events must list the event types it takes (or '*')`);
    for (const e of spec.events) {
      if (e !== '*' && !(EVENT_TYPES as readonly string[]).includes(e)) throw new Error(`${where}: ${JSON.stringify(e)} is not an event type (${EVENT_TYPES.join(', ')})`);
    }
    const common = {
      name: spec.name,
      events: spec.events,
      concurrency: positive(spec.concurrency ?? 1, `${where}: concurrency`),
      maxAttempts: positive(spec.maxAttempts ?? 5, `${where}: maxAttempts`),
      timeoutMs: positive(spec.timeoutSeconds ?? 60, `${where}: timeoutSeconds`) * 1000,
    };
    if ('command' in spec && 'module' in spec) throw new Error(`${where}: give a command or a module, not both`);
    if ('command' in spec) {
      if (!Array.isArray(spec.command) || spec.command.length === 0 || spec.command.some((a) => typeof a !== 'string')) {
        throw new Error(`${where}: command must be a non-empty list of strings (the program and its arguments)`);
      }
      hooks.push(commandHook({ ...common, command: spec.command, env: spec.env }));
    } else if ('module' in spec && typeof spec.module === 'string') {
      hooks.push(await moduleHook({ ...common, module: spec.module }, admin));
    } else {
      throw new Error(`${where}: give a command (a list of strings) or a module (a path)`);
    }
  }
  return hooks;
}

function positive(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a whole number of at least 1, not ${JSON.stringify(n)}`);
  return n;
}
