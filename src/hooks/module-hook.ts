// An operator's hook that is a JavaScript module: it exports a handler (as `default` or
// `handler`) that receives the event and a context with an AdminService client, a
// logger and an abort signal. The same at-least-once rule as for commands holds.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AdminClient } from '../client/admin-client.js';
import type { Hook, HookContext, HookEvent, HookSettings } from './hook.js';

export interface ModuleHookContext extends HookContext {
  admin: AdminClient;
}

export type ModuleHookHandler = (event: HookEvent, ctx: ModuleHookContext) => Promise<void> | void;

export interface ModuleHookSpec extends HookSettings {
  /** Path of the module (relative to the working directory) or a package name. */
  module: string;
}

/** Loads the module now, so that a wrong path or a missing handler stops the coordinator at start with a clear error. */
export async function moduleHook(spec: ModuleHookSpec, admin: () => AdminClient): Promise<Hook> {
  const specifier = spec.module.startsWith('.') || spec.module.startsWith('/') ? pathToFileURL(resolve(spec.module)).href : spec.module;
  let loaded: { default?: unknown; handler?: unknown };
  try {
    loaded = (await import(specifier)) as typeof loaded;
  } catch (err) {
    throw new Error(`hook ${spec.name}: cannot load ${spec.module}: ${(err as Error).message}`, { cause: err });
  }
  const handler = typeof loaded.handler === 'function' ? loaded.handler : loaded.default;
  if (typeof handler !== 'function') {
    throw new Error(`hook ${spec.name}: ${spec.module} exports no function as \`handler\` or \`default\``);
  }
  const handle = handler as ModuleHookHandler;
  const { module: _module, ...settings } = spec;
  return {
    ...settings,
    async handle(event, ctx) {
      await handle(event, { ...ctx, admin: admin() });
    },
  };
}
