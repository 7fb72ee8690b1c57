// `--ignore-if-output-exists[=kiln|upstream]`: bare means kiln, a value is checked, and
// the rewriting stops at `--`.
import { describe, expect, test } from '@jest/globals';
import { bareOption, existingOutputsFrom, parse } from '../../../src/cli/options.js';
import { UsageError } from '../../../src/cli/usage-error.js';

const OPTIONS = { 'ignore-if-output-exists': { type: 'string' }, priority: { type: 'string' } } as const;
const choice = (args: string[]) => existingOutputsFrom(parse(bareOption(args, 'ignore-if-output-exists', 'kiln'), OPTIONS).values['ignore-if-output-exists']);

describe('--ignore-if-output-exists', () => {
  test('absent, bare, =kiln and =upstream', () => {
    expect(choice(['a.drv'])).toBe('none');
    expect(choice(['a.drv', '--ignore-if-output-exists'])).toBe('kiln');
    expect(choice(['--ignore-if-output-exists', 'a.drv', '--priority', '-3'])).toBe('kiln');
    expect(choice(['--ignore-if-output-exists=kiln', 'a.drv'])).toBe('kiln');
    expect(choice(['a.drv', '--ignore-if-output-exists=upstream'])).toBe('upstream');
  });

  test('bare keeps the positionals where they are; after -- it is a positional', () => {
    const parsed = parse(bareOption(['--ignore-if-output-exists', 'a.drv', '--', '--ignore-if-output-exists'], 'ignore-if-output-exists', 'kiln'), OPTIONS);
    expect(parsed.positionals).toEqual(['a.drv', '--ignore-if-output-exists']);
    expect(parsed.values['ignore-if-output-exists']).toBe('kiln');
  });

  test('an unknown value is a usage error that names the choices', () => {
    expect(() => choice(['--ignore-if-output-exists=upstreams'])).toThrow(UsageError);
    expect(() => choice(['--ignore-if-output-exists='])).toThrow('--ignore-if-output-exists takes kiln (the default) or upstream, not ""');
  });
});
