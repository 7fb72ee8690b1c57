// System features, with Nix's semantics: a derivation's `requiredSystemFeatures` must all
// be supported by the agent that builds it, and an agent with mandatory features only
// takes derivations that require every one of them (Nix's remote-builder rule). The
// claim statement checks the same rule in SQL (allocation.ts); this is the rule itself.
import { invalidArgument } from '../errors.js';
import type { Derivation } from '../store/derivation.js';

/** What an agent offers: `supported` includes its mandatory features. */
export interface AgentFeatures {
  supported: string[];
  mandatory: string[];
}

export const NO_FEATURES: AgentFeatures = { supported: [], mandatory: [] };

const FEATURE = /^[A-Za-z0-9_.+\-:/]{1,128}$/;
const MAX_FEATURES = 64;

/**
 * The features a derivation requires: `requiredSystemFeatures` split on white space, as
 * Nix reads it (`ParsedDerivation::getRequiredSystemFeatures`), or the list of that name
 * in structured attributes (`__json`).
 */
export function requiredFeatures(drv: Derivation): string[] {
  const json = drv.env.get('__json');
  let listed: string[] = [];
  if (json !== undefined) {
    const attrs = parseJson(json);
    const value = attrs?.requiredSystemFeatures;
    if (Array.isArray(value)) listed = value.filter((v): v is string => typeof v === 'string');
  } else {
    listed = (drv.env.get('requiredSystemFeatures') ?? '').split(/\s+/);
  }
  return [...new Set(listed.filter(Boolean))].sort();
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks an agent's features (from its Hello or a command line): names Nix would accept,
 * each at most once per list, and mandatory ones added to the supported ones.
 */
export function validateAgentFeatures(features: AgentFeatures, where: string): AgentFeatures {
  for (const [list, names] of [['system features', features.supported], ['mandatory features', features.mandatory]] as const) {
    if (names.length > MAX_FEATURES) throw invalidArgument(`${where}: at most ${MAX_FEATURES} ${list}, not ${names.length}`);
    for (const name of names) {
      if (!FEATURE.test(name)) {
        throw invalidArgument(`${where}: system feature ${JSON.stringify(name)} must be 1-128 letters, digits or _ . + - : /`);
      }
    }
  }
  const mandatory = [...new Set(features.mandatory)].sort();
  return { supported: [...new Set([...features.supported, ...mandatory])].sort(), mandatory };
}

/** Whether an agent with these features may build a derivation that requires `required`. */
export function featuresMatch(required: readonly string[], agent: AgentFeatures): boolean {
  return required.every((f) => agent.supported.includes(f)) && agent.mandatory.every((f) => required.includes(f));
}
