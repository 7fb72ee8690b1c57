// The settings the agent's Nix runs with, whatever the machine's nix.conf says, and what
// the machine's Nix says of itself (its system features, for the agent's Hello).
import { spawnSync } from 'node:child_process';

export interface AgentNixSettings {
  /**
   * Nix's cache directory ($XDG_CACHE_HOME, where `nix/binary-cache-v6.sqlite` remembers
   * narinfo lookups): the agent's own, so its lookups neither poison nor read the user's.
   */
  cacheHome?: string;
  /** The system features the agent advertises: Nix must agree, or it refuses the build. */
  systemFeatures?: string[];
}

/**
 * The environment for the agent's Nix commands. A narinfo miss is never remembered: the
 * agent asks kiln's cache for paths before they are built, and a remembered miss (an
 * hour by default) made Nix call a path the cache has since received missing, setup
 * failure after setup failure. The `nix` command (`nix copy`) needs `nix-command`.
 */
export function agentNixEnv(base: NodeJS.ProcessEnv, settings: AgentNixSettings): NodeJS.ProcessEnv {
  const lines = ['narinfo-cache-negative-ttl = 0', 'extra-experimental-features = nix-command'];
  if (settings.systemFeatures) lines.push(`system-features = ${settings.systemFeatures.join(' ')}`);
  return {
    ...base,
    // NIX_CONFIG's lines win over nix.conf; the machine's own NIX_CONFIG is kept before them.
    NIX_CONFIG: [base.NIX_CONFIG, ...lines].filter(Boolean).join('\n'),
    ...(settings.cacheHome ? { XDG_CACHE_HOME: settings.cacheHome } : {}),
  };
}

/** The machine's Nix `system-features` (`nix show-config`), or undefined without a working Nix. */
export function machineSystemFeatures(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const shown = spawnSync('nix', ['show-config', '--json', '--extra-experimental-features', 'nix-command'], { env, encoding: 'utf8', timeout: 30_000 });
  if (shown.status !== 0) return undefined;
  try {
    const config = JSON.parse(shown.stdout) as Record<string, { value?: unknown }>;
    const value = config['system-features']?.value;
    return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : undefined;
  } catch {
    return undefined;
  }
}
