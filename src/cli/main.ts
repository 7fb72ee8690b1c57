#!/usr/bin/env node
// The `kiln` command: dispatches to a subcommand, prints errors plainly, exits non-zero.
import { Code, ConnectError } from '@connectrpc/connect';
import { agentCommand } from './commands/agent.js';
import { buildCommand } from './commands/build.js';
import { cacheCommand } from './commands/cache.js';
import { coordinatorCommand } from './commands/coordinator.js';
import { qaCommand } from './commands/qa.js';
import { UsageError } from './usage-error.js';
import { USAGE, usageFor } from './usage.js';

const COMMANDS: Record<string, (args: string[]) => Promise<void>> = {
  coordinator: coordinatorCommand,
  agent: agentCommand,
  build: buildCommand,
  cache: cacheCommand,
  qa: qaCommand,
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  // `--help` anywhere (before a `--`) shows the usage of the command it follows.
  const options = argv.indexOf('--') === -1 ? argv : argv.slice(0, argv.indexOf('--'));
  if (options.includes('--help') || options.includes('-h')) {
    console.log(usageFor(options.filter((a) => !a.startsWith('-'))));
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`kiln: unknown command ${JSON.stringify(name)}\n\n${USAGE}`);
    return 2;
  }
  try {
    await command(rest);
    // A command that ran but found a failure (a watched build failed) set it.
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    return report(err);
  }
}

function report(err: unknown): number {
  if (err instanceof UsageError) {
    console.error(`kiln: ${err.message}\n(kiln --help shows the commands)`);
    return 2;
  }
  if (err instanceof ConnectError) {
    if (err.code === Code.Unavailable) {
      console.error(`kiln: cannot reach the coordinator: ${err.rawMessage}\n(is it running? check --coordinator or KILN_COORDINATOR)`);
    } else {
      console.error(`kiln: ${Code[err.code]}: ${err.rawMessage}`);
    }
    return 1;
  }
  console.error(`kiln: ${err instanceof Error ? err.message : String(err)}`);
  return 1;
}

process.exitCode = await main(process.argv.slice(2));
