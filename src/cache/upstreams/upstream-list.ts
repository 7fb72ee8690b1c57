// The upstream caches a farm builds on top of, as configured: each with its URL, the
// keys trusted for its narinfos, and what it is used for. Order is priority order.
import { parseTrustedKeys, type TrustedKeys } from '../../store/narinfo-trust.js';

export type UpstreamUse = 'outputs' | 'derivations' | 'both';

/** As written in the configuration file (`upstreams: [{ url, publicKeys, for }]`). */
export interface UpstreamSpec {
  url: string;
  publicKeys: string[];
  /** Default 'both'. */
  for?: UpstreamUse;
}

export interface Upstream {
  /** Without a trailing slash. */
  url: string;
  /** The keys as given (agents get them in Welcome). */
  publicKeys: string[];
  keys: TrustedKeys;
  forOutputs: boolean;
  forDerivations: boolean;
}

/** Checks and reads the specs; throws an Error naming the upstream and field at fault. */
export function parseUpstreams(specs: readonly UpstreamSpec[], where = 'upstreams'): Upstream[] {
  const seen = new Set<string>();
  return specs.map((spec, i) => {
    const at = `${where}[${i}]`;
    let url: URL;
    try {
      url = new URL(spec.url);
    } catch {
      throw new Error(`${at}.url ${JSON.stringify(spec.url)} is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${at}.url ${spec.url} must be http:// or https://`);
    const base = spec.url.replace(/\/+$/, '');
    if (seen.has(base)) throw new Error(`${at}.url ${base} is given twice`);
    seen.add(base);
    if (!Array.isArray(spec.publicKeys) || spec.publicKeys.length === 0) {
      throw new Error(`${at}.publicKeys: an upstream needs at least one trusted key (nothing unsigned is used)`);
    }
    let keys: TrustedKeys;
    try {
      keys = parseTrustedKeys(spec.publicKeys);
    } catch (err) {
      throw new Error(`${at}.publicKeys: ${(err as Error).message}`, { cause: err });
    }
    const use = spec.for ?? 'both';
    if (!['outputs', 'derivations', 'both'].includes(use)) throw new Error(`${at}.for ${JSON.stringify(use)} is not outputs, derivations or both`);
    return { url: base, publicKeys: spec.publicKeys.map((k) => k.trim()), keys, forOutputs: use !== 'derivations', forDerivations: use !== 'outputs' };
  });
}
