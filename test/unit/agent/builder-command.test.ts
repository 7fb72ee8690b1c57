import { describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builderCommand, findExecutable, hostTools } from '../../../src/agent/builders/local/builder-command.js';
import { outputCycle } from '../../../src/agent/builders/local/built-outputs.js';

const tools = { unshare: '/usr/bin/unshare', mount: '/usr/bin/mount', sh: '/bin/sh' };
const store = { from: '/var/kiln-root/nix/store', to: '/nix/store' };

describe('the builder command line', () => {
  test('is the builder itself when the store is where the derivation says', () => {
    expect(builderCommand('/bin/sh', ['-c', 'echo hi'], {})).toEqual({ command: '/bin/sh', args: ['-c', 'echo hi'] });
  });

  test('mounts a store kept under a root on the literal store directory, in a private mount namespace', () => {
    const { command, args } = builderCommand('/nix/store/abc-bash/bin/bash', ['-e', 'builder.sh'], {}, { store, tools, asRoot: true });
    expect(command).toBe('/usr/bin/unshare');
    expect(args.slice(0, 3)).toEqual(['--mount', '--propagation', 'private']);
    expect(args.slice(-7)).toEqual(['kiln-mount-store', '/usr/bin/mount', store.from, store.to, '/nix/store/abc-bash/bin/bash', '-e', 'builder.sh']);
  });

  test('maps the user to root in a user namespace when not root', () => {
    const { args } = builderCommand('/bin/sh', [], {}, { store, tools, asRoot: false });
    expect(args.slice(0, 5)).toEqual(['--user', '--map-root-user', '--mount', '--propagation', 'private']);
  });

  test('hands the builder its arguments and environment untouched by the wrapper script', async () => {
    // The wrapper, with `true` standing in for mount: what reaches the builder is exactly what was given.
    const run = async (env: Record<string, string>) => {
      const { args } = builderCommand('/usr/bin/env', ['-0'], env, { store, tools: { ...tools, mount: '/bin/true' }, asRoot: true });
      const out = await new Promise<string>((resolve, reject) =>
        execFile('/bin/sh', args.slice(args.indexOf('-c')), { env, cwd: '/' }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
      );
      return out.split('\0').filter(Boolean).sort();
    };
    // Variables a shell would reset or set itself are passed as given, even odd values.
    const env = { ONE: '1', IFS: 'x y', OPTIND: '7', PPID: '5', PWD: '/', odd: '$1 "$@" \n;' };
    expect(await run(env)).toEqual(Object.entries(env).map(([k, v]) => `${k}=${v}`).sort());
    expect(await run({ ONE: '1', PWD: '/' })).toEqual(['ONE=1', 'PWD=/']);
  });
});

describe('finding host programs', () => {
  test('finds an executable on the search path and says which is missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-path-'));
    try {
      writeFileSync(join(dir, 'unshare'), '', { mode: 0o755 });
      writeFileSync(join(dir, 'mount'), '', { mode: 0o644 }); // not executable
      expect(findExecutable('unshare', `/nonexistent:${dir}`)).toBe(join(dir, 'unshare'));
      expect(() => hostTools(dir)).toThrow(/mount is not on PATH/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('cycles between outputs', () => {
  const out = '/nix/store/0c5k9gqkqa8n0mdmyf0ys4d1lv5sfm5b-x';
  const dev = '/nix/store/1ff6wbfp9i2mafyqwqfzhdn5zvm2rc14-x-dev';
  const lib = '/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-x-lib';
  const input = '/nix/store/00000000000000000000000000000000-input';

  test('self-references and references one way are not cycles', () => {
    expect(outputCycle([{ path: out, references: [out, dev, input] }, { path: dev, references: [dev, lib] }, { path: lib, references: [] }])).toBeUndefined();
  });

  test('outputs referring to each other, directly or through a third, are', () => {
    expect(outputCycle([{ path: out, references: [dev] }, { path: dev, references: [out] }])).toEqual([out, dev]);
    expect(outputCycle([{ path: out, references: [dev] }, { path: dev, references: [lib] }, { path: lib, references: [out] }])).toEqual([out, lib]);
  });
});
