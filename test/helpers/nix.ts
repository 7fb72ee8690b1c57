// Runs the real Nix client (Debian's nix-bin) the way kiln's tests need it: as root
// without build users or a sandbox, and with no default substituter (it is unreachable
// here and costs seconds per build).
import { execFileSync, type ExecFileSyncOptions } from 'node:child_process';

export const NIX_CONFIG = [
  'sandbox = false',
  'build-users-group =',
  'substituters =',
  'experimental-features = nix-command',
].join('\n');

/**
 * For building in a chroot store (`--store DIR`), where Nix runs builders in a chroot even
 * without the sandbox: the host's /bin/sh and its libraries, for shDrv's builders.
 */
export const CHROOT_STORE_CONFIG = ['extra-sandbox-paths = /bin /lib /lib64 /usr'];

export function nixEnv(extraConfig: string[] = [], env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, NIX_CONFIG: [NIX_CONFIG, ...extraConfig].join('\n') };
}

/** Runs a Nix command and returns its standard output; throws with its stderr on failure. */
export function nix(cmd: string, args: string[], opts: ExecFileSyncOptions & { config?: string[] } = {}): Buffer {
  const { config, ...rest } = opts;
  return execFileSync(cmd, args, { env: nixEnv(config), maxBuffer: 1 << 30, stdio: ['pipe', 'pipe', 'pipe'], ...rest }) as Buffer;
}

/** Writes a Nix expression's derivation(s) into /nix/store and returns the .drv path(s). */
export function instantiate(expression: string): string[] {
  return nix('nix-instantiate', ['--expr', expression]).toString().trim().split('\n');
}
