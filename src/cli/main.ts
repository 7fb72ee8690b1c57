#!/usr/bin/env node
// The `kiln` command: dispatches to a subcommand, prints errors plainly, exits non-zero.
import { Code, ConnectError } from '@connectrpc/connect';
import { agentCommand } from './commands/agent.js';
import { buildCommand } from './commands/build.js';
import { cacheCommand } from './commands/cache.js';
import { coordinatorCommand } from './commands/coordinator.js';
import { UsageError } from './usage-error.js';

const USAGE = `usage: kiln <command> [options]

  kiln coordinator [--listen HOST:PORT] [--database URL | --data-dir DIR] [--config FILE]
                   [--allocation priority-first|fair-share:KEY] [--lease SECONDS]
                   [--retries N] [--retry-on KIND,...] [--retry-backoff SECONDS]
                   [--retry-tag KEY=VALUE:RETRIES[:KIND,...[:BACKOFF]]]...
                   [--timeout SECONDS] [--max-silent-time SECONDS]
                   [--max-load-per-cpu X] [--min-free-disk-gib X] [--only-submitted]
                   [--local-agent [--local-agent-tag k=v]...]
                   [--min-free-nar-gib X]
  kiln agent new [--name N] [--tag k=v]...
  kiln agent password <agent-id>
  kiln agent list
  kiln agent drain|deactivate|activate <agent-id>
  kiln agent token new [--tag k=v]... [--expires 7d|DATE]   prints the token (once)
  kiln agent token list · kiln agent token revoke <token-id>
  kiln agent run (--id ID --password PW | --register-token FILE --name N [--credentials-file F])
                 [--builder nix|local] [--max-parallel N]
                 [--system S]... [--tag k=v]... [--store ROOT] [--store-dir DIR]
                 [--system-feature F]... [--mandatory-feature F]... [--state-dir DIR]
                 [--timeout SECONDS] [--max-silent-time SECONDS]
  kiln build submit <drv>... [--priority N] [--tag k=v]... [--id UUID] [--ignore-if-output-exists]
                   [--timeout SECONDS] [--max-silent-time SECONDS]
  kiln build show <build-id>
  kiln build list [--state S]... [--tag k=v]... [--derivation DRV] [--limit N]
  kiln build cancel <build-id>
  kiln build retry <build-id>
  kiln build priority <build-id> <priority>
  kiln build tag <build-id> [k=v]... [--remove KEY]...
  kiln cache gc [--dry-run]
  kiln cache public-key [--guix]

Client commands talk to --coordinator URL (or $KILN_COORDINATOR, default
http://127.0.0.1:8745) with the admin token in $KILN_ADMIN_TOKEN, and print
JSON with --json.`;

const COMMANDS: Record<string, (args: string[]) => Promise<void>> = {
  coordinator: coordinatorCommand,
  agent: agentCommand,
  build: buildCommand,
  cache: cacheCommand,
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`kiln: unknown command ${JSON.stringify(name)}\n\n${USAGE}`);
    return 2;
  }
  try {
    await command(rest);
    return 0;
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
