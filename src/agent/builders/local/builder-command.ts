// How the local builder starts a derivation's builder. With the store under a root
// (ROOT/nix/store), the builder must still find its inputs and write its outputs at the
// literal paths the derivation names: it runs in a private mount namespace where the
// root's store directory is bind-mounted onto the literal one (unshare(1), as root; in a
// user namespace mapped to root otherwise). Nothing else is isolated: there is no sandbox.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Absolute paths of the host programs the namespace needs. */
export interface HostTools {
  unshare: string;
  mount: string;
  sh: string;
}

export interface StoreMount {
  /** The root's store directory, e.g. ROOT/nix/store. */
  from: string;
  /** The literal store directory, e.g. /nix/store. */
  to: string;
}

export interface BuilderCommand {
  command: string;
  args: string[];
}

/** Variables a POSIX shell resets at start-up even when its environment sets them. */
const SHELL_RESETS = ['IFS', 'OPTIND', 'PPID'];

/**
 * The command line for `builder args…` with environment `env`, wrapped in the namespace
 * when the store is mounted. The wrapper shell passes the environment on as it got it:
 * it assigns no variable of its own, and sets back those the shell itself resets.
 */
export function builderCommand(
  builder: string,
  args: string[],
  env: Readonly<Record<string, string>>,
  mount?: { store: StoreMount; tools: HostTools; asRoot: boolean },
): BuilderCommand {
  if (!mount) return { command: builder, args };
  const { store, tools, asRoot } = mount;
  const namespace = asRoot ? ['--mount', '--propagation', 'private'] : ['--user', '--map-root-user', '--mount', '--propagation', 'private'];
  const restored = SHELL_RESETS.filter((name) => env[name] !== undefined);
  const script = [
    ...restored.map((name, i) => `${name}=$${i + 1}`),
    ...(restored.length ? [`shift ${restored.length}`] : []),
    '"$1" --bind "$2" "$3" || exit 126',
    'shift 3',
    'exec "$@"',
  ].join('; ');
  return {
    command: tools.unshare,
    args: [...namespace, tools.sh, '-c', script, 'kiln-mount-store', ...restored.map((name) => env[name]!), tools.mount, store.from, store.to, builder, ...args],
  };
}

/** The absolute path of `name` on `searchPath` (a PATH value), or an error saying what is missing. */
export function findExecutable(name: string, searchPath = process.env.PATH ?? ''): string {
  for (const dir of searchPath.split(delimiter).filter(Boolean)) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error(`${name} is not on PATH (${searchPath}); the local builder needs it to give builds a store under --store`);
}

export function hostTools(searchPath?: string): HostTools {
  return { unshare: findExecutable('unshare', searchPath), mount: findExecutable('mount', searchPath), sh: findExecutable('sh', searchPath) };
}
