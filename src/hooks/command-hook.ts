// An operator's hook that is a command: run with the event as JSON on its standard input,
// within a time limit; its output goes to the coordinator's log, and a non-zero exit is a
// failed delivery (tried again, then parked). At least once: the command may see an event
// twice (after a crash or a retry) and must be written to be harmless when it does.
import { lastLines, runProcess } from '../agent/builders/process.js';
import type { Hook, HookContext, HookEvent, HookSettings } from './hook.js';

export interface CommandHookSpec extends HookSettings {
  /** The program and its arguments (no shell). */
  command: string[];
  env?: Record<string, string>;
}

export function commandHook(spec: CommandHookSpec): Hook {
  const { command, env, ...settings } = spec;
  const [program, ...args] = command;
  if (!program) throw new Error(`hook ${spec.name}: command is empty`);
  return {
    ...settings,
    async handle(event: HookEvent, ctx: HookContext) {
      const result = await runProcess(program, args, {
        input: Buffer.from(`${JSON.stringify(event)}\n`),
        signal: ctx.signal,
        env: { ...process.env, ...env, KILN_EVENT_TYPE: event.type, KILN_EVENT_ID: String(event.id) },
      });
      const output = lastLines(result, 40);
      if (output.trim()) ctx.log.info({ output }, 'hook command output');
      if (result.code !== 0) {
        const why = result.stoppedBy === 'abort' ? 'was stopped' : result.signal ? `was killed by ${result.signal}` : `exited with ${result.code}`;
        throw new Error(`${command.join(' ')} ${why}${output.trim() ? `: ${output.trim().split('\n').slice(-3).join(' | ')}` : ''}`);
      }
    },
  };
}
