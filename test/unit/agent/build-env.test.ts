import { describe, expect, test } from '@jest/globals';
import { buildEnvironment, passAsFileName } from '../../../src/agent/builders/local/build-env.js';
import type { Derivation } from '../../../src/store/derivation.js';

function drv(env: Record<string, string>): Derivation {
  return {
    outputs: new Map([['out', { path: '/nix/store/0c5k9gqkqa8n0mdmyf0ys4d1lv5sfm5b-x', hashAlgo: '', hash: '' }]]),
    inputDrvs: new Map(),
    inputSrcs: [],
    platform: 'x86_64-linux',
    builder: '/bin/sh',
    args: [],
    env: new Map(Object.entries(env)),
  };
}

const opts = { buildDir: '/tmp/kiln-build-x-1', storeDir: '/nix/store', cores: 3, fixedOutput: false, hostEnv: { http_proxy: 'http://proxy:3128', SECRET: 's' } };

describe('the builder environment', () => {
  test('is the fixed variables Nix sets and the derivation\'s own, nothing from the agent', () => {
    const { env, files } = buildEnvironment(drv({ name: 'x', out: '/nix/store/0c5k9gqkqa8n0mdmyf0ys4d1lv5sfm5b-x', system: 'x86_64-linux' }), opts);
    expect(env).toEqual({
      PATH: '/path-not-set',
      HOME: '/homeless-shelter',
      NIX_STORE: '/nix/store',
      NIX_BUILD_CORES: '3',
      name: 'x',
      out: '/nix/store/0c5k9gqkqa8n0mdmyf0ys4d1lv5sfm5b-x',
      system: 'x86_64-linux',
      NIX_BUILD_TOP: '/tmp/kiln-build-x-1',
      TMPDIR: '/tmp/kiln-build-x-1',
      TEMPDIR: '/tmp/kiln-build-x-1',
      TMP: '/tmp/kiln-build-x-1',
      TEMP: '/tmp/kiln-build-x-1',
      PWD: '/tmp/kiln-build-x-1',
      NIX_LOG_FD: '2',
      TERM: 'xterm-256color',
    });
    expect(files).toEqual([]);
  });

  test('lets the derivation set PATH and HOME, but not the build directory variables', () => {
    const { env } = buildEnvironment(drv({ PATH: '/usr/bin:/bin', HOME: '/home/x', TMPDIR: '/elsewhere', NIX_BUILD_CORES: '99' }), opts);
    expect(env.PATH).toBe('/usr/bin:/bin');
    expect(env.HOME).toBe('/home/x');
    expect(env.NIX_BUILD_CORES).toBe('99');
    expect(env.TMPDIR).toBe('/tmp/kiln-build-x-1');
  });

  test('writes passAsFile variables to files named as Nix names them and passes their paths', () => {
    const { env, files } = buildEnvironment(drv({ passAsFile: 'script  big', script: 'echo hi', big: 'x'.repeat(100), small: 'y' }), opts);
    // Nix: ".attr-" + the Nix base32 SHA-256 of the variable name.
    expect(passAsFileName('script')).toBe('.attr-1qdadaf1y4w9h4696wl0axblgfqvb8g3mw9kb71f98b6gw5jg811'); // nix-hash --to-base32 of printf script | sha256sum
    expect(env.scriptPath).toBe(`/tmp/kiln-build-x-1/${passAsFileName('script')}`);
    expect(env.bigPath).toBe(`/tmp/kiln-build-x-1/${passAsFileName('big')}`);
    expect(env.script).toBeUndefined();
    expect(env.small).toBe('y');
    expect(files).toEqual([
      { path: env.scriptPath, contents: 'echo hi' },
      { path: env.bigPath, contents: 'x'.repeat(100) },
    ]);
  });

  test('gives a fixed-output derivation its impureEnvVars from the agent, and only those', () => {
    const d = drv({ impureEnvVars: 'http_proxy https_proxy' });
    const fixed = buildEnvironment(d, { ...opts, fixedOutput: true }).env;
    expect(fixed).toMatchObject({ http_proxy: 'http://proxy:3128', https_proxy: '', NIX_OUTPUT_CHECKED: '1' });
    expect(fixed.SECRET).toBeUndefined();
    const plain = buildEnvironment(d, opts).env;
    expect(plain.http_proxy).toBeUndefined();
    expect(plain.NIX_OUTPUT_CHECKED).toBeUndefined();
  });

  test('refuses structured attributes, which it cannot pass', () => {
    expect(() => buildEnvironment(drv({ __json: '{}' }), opts)).toThrow(/structured attributes \(__json\) are not supported/);
  });
});
