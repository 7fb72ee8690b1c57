// Every flag a `kiln` command accepts is in its usage text (issue #19: --nar-dir, --tls-*
// and --local-agent were missing). The flags are read from the option tables each
// command's source hands to parse(); the usage from what `kiln <command> --help` prints.
import { describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { usageFor } from '../../../src/cli/usage.js';
import { REPO_ROOT } from '../../helpers/coordinator.js';

/** The option names in a command file's parse() tables: `name: { type: …` entries. */
function flagsIn(file: string): string[] {
  const source = readFileSync(join(REPO_ROOT, 'src', 'cli', 'commands', file), 'utf8');
  return [...new Set([...source.matchAll(/(?<=^|[\s,{])'?([a-z][a-z-]*)'?: \{ type: '(?:string|boolean)'/gm)].map((m) => m[1]!))];
}

// Each command file, and the command words whose usage covers it.
const FILES: [string, string[][]][] = [
  ['coordinator.ts', [['coordinator']]],
  ['agent-run.ts', [['agent', 'run']]],
  ['agent.ts', [['agent']]],
  ['agent-token.ts', [['agent', 'token']]],
  ['build.ts', [['build']]],
  ['cache.ts', [['cache']]],
];

describe('kiln usage text', () => {
  test.each(FILES)('lists every flag that %s accepts', (file, commands) => {
    const flags = flagsIn(file);
    expect(flags.length).toBeGreaterThan(0);
    const usage = commands.map((words) => usageFor(words)).join('\n');
    // --coordinator and --json are every client command's, described below the entries.
    const missing = flags.filter((f) => !new RegExp(`--${f}\\b`).test(usage));
    expect(missing).toEqual([]);
  });

  test('the flags read from a file are the ones in it (a table the pattern misses would hide flags)', () => {
    expect(flagsIn('coordinator.ts')).toEqual(expect.arrayContaining(['nar-dir', 'tls-cert', 'tls-key', 'local-agent', 'upstream-key']));
    expect(flagsIn('build.ts')).toEqual(expect.arrayContaining(['priority', 'wait', 'attempt', 'follow', 'remove', 'limit']));
  });
});
