// The configuration file: JSON or TypeScript, checked with the place of each mistake, and
// read into the same settings as the command-line flags.
import { afterAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configAsFlags, loadConfig } from '../../../src/coordinator/config-file.js';
import { schedulingOptions } from '../../../src/cli/commands/coordinator.js';

const dir = mkdtempSync(join(tmpdir(), 'kiln-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('kiln coordinator --config', () => {
  test('a kiln.config.ts is transpiled and read, and becomes the same policy the flags make', async () => {
    const path = file(
      'kiln.config.ts',
      `interface Retry { retries: number }
      const retry: Retry & { on: string[]; byTag: { tag: string; retries: number; backoffSeconds: number }[] } =
        { retries: 2, on: ['failure'], byTag: [{ tag: 'flaky=yes', retries: 4, backoffSeconds: 30 }] };
      export default { scheduling: { allocation: 'fair-share:owner', leaseSeconds: 90, submitMissingInputs: false }, retry,
        hooks: [{ name: 'notify', events: ['build-failure'], command: ['true'] }] };`,
    );
    const config = await loadConfig(path);
    expect(config.hooks).toEqual([{ name: 'notify', events: ['build-failure'], command: ['true'] }]);
    const opts = schedulingOptions(configAsFlags(config) as Parameters<typeof schedulingOptions>[0]);
    expect(opts.allocationPolicy!.name).toBe('fair-share:owner');
    expect(opts.leaseMs).toBe(90_000);
    expect(opts.submitMissingInputs).toBe(false);
    expect(opts.retryPolicy!.farm).toMatchObject({ maxAttempts: 3, on: ['failure'] });
    expect(opts.retryPolicy!.byTag).toEqual([
      { tag: { key: 'flaky', value: 'yes' }, rule: { maxAttempts: 5, on: ['failure'], initialBackoffMs: 30_000, maxBackoffMs: 300_000 } },
    ]);
  });

  test('a JSON file is read as it is', async () => {
    const config = await loadConfig(file('kiln.json', JSON.stringify({ scheduling: { timeoutSeconds: 3600 } })));
    expect(schedulingOptions(configAsFlags(config) as Parameters<typeof schedulingOptions>[0]).defaultLimits).toEqual({ timeoutSeconds: 3600, maxSilentSeconds: 0 });
  });

  test.each([
    ['{"schedule": {}}', /schedule: is not a setting \(known: scheduling, retry, hooks\)/],
    ['{"scheduling": {"lease": 5}}', /scheduling.lease: is not a setting/],
    ['{"scheduling": {"leaseSeconds": "soon"}}', /scheduling.leaseSeconds: must be a number/],
    ['{"retry": {"byTag": [{"tag": "flaky", "retries": 1}]}}', /retry.byTag\[0\].tag: must be KEY=VALUE/],
    ['{"hooks": {}}', /hooks: must be a list/],
    ['[1, 2]', /the file: must hold \(or export as default\) an object/],
    ['{ not json', /Expected property name|JSON/],
  ])('refuses %s naming the place', async (text, message) => {
    await expect(loadConfig(file(`bad-${Math.random().toString(36).slice(2)}.json`, text))).rejects.toThrow(message);
  });

  test('an unknown kind of file is refused', async () => {
    await expect(loadConfig(file('kiln.yaml', 'a: 1'))).rejects.toThrow(/use .json, .ts, .js or .mjs/);
  });
});
