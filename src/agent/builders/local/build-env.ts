// The environment a derivation's builder runs in, as Nix sets it up
// (LocalDerivationGoal::initEnv and initTmpDir in src/libstore/build/local-derivation-goal.cc):
// a few fixed variables, then the derivation's own, with `passAsFile` ones written to
// files in the build directory instead.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { encodeBase32 } from '../../../store/base32.js';
import type { Derivation } from '../../../store/derivation.js';

export interface BuildEnvOptions {
  /** The build's fresh top directory (NIX_BUILD_TOP, TMPDIR, PWD). */
  buildDir: string;
  /** The store directory the derivation's paths are in (NIX_STORE). */
  storeDir: string;
  /** NIX_BUILD_CORES. */
  cores: number;
  /** Whether the derivation is fixed-output: it may then see `impureEnvVars` from here. */
  fixedOutput: boolean;
  /** The agent's own environment, read only for a fixed-output derivation's impureEnvVars. */
  hostEnv: NodeJS.ProcessEnv;
}

export interface BuildEnv {
  env: Record<string, string>;
  /** Files to write in the build directory before the builder starts (passAsFile). */
  files: { path: string; contents: string }[];
}

/** What Nix calls the file of a passAsFile variable: `.attr-<base32 sha256 of its name>`. */
export function passAsFileName(variable: string): string {
  return `.attr-${encodeBase32(createHash('sha256').update(variable).digest())}`;
}

export function buildEnvironment(drv: Derivation, opts: BuildEnvOptions): BuildEnv {
  if (drv.env.has('__json')) {
    throw new Error('structured attributes (__json) are not supported by the local builder');
  }
  // Most shells set a default PATH when there is none; Nix wants none to leak in.
  const env: Record<string, string> = {
    PATH: '/path-not-set',
    // Set but absent, so that programs do not look the user up in /etc/passwd.
    HOME: '/homeless-shelter',
    NIX_STORE: opts.storeDir,
    NIX_BUILD_CORES: String(opts.cores),
  };
  const files: BuildEnv['files'] = [];
  const passAsFile = new Set((drv.env.get('passAsFile') ?? '').split(/\s+/).filter(Boolean));
  for (const [name, value] of drv.env) {
    if (passAsFile.has(name)) {
      const file = passAsFileName(name);
      files.push({ path: join(opts.buildDir, file), contents: value });
      env[`${name}Path`] = join(opts.buildDir, file);
    } else {
      env[name] = value;
    }
  }
  env.NIX_BUILD_TOP = opts.buildDir;
  env.TMPDIR = env.TEMPDIR = env.TMP = env.TEMP = opts.buildDir;
  env.PWD = opts.buildDir;
  if (opts.fixedOutput) {
    // Compatibility with Nix ≤ 0.7's fetchurl, which then skips its own check.
    env.NIX_OUTPUT_CHECKED = '1';
    // A fixed output's content is checked by its hash, so it may see proxy settings and the like.
    for (const name of (drv.env.get('impureEnvVars') ?? '').split(/\s+/).filter(Boolean)) env[name] = opts.hostEnv[name] ?? '';
  }
  env.NIX_LOG_FD = '2';
  env.TERM = 'xterm-256color';
  return { env, files };
}
