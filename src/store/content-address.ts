// The content address of a fixed-output derivation's output, as Nix writes it in
// narinfo (`CA:`) and path-info: `fixed:r:sha256:<nix32>` for a recursive (NAR) hash,
// `fixed:sha256:<nix32>` for a flat one (ContentAddress::render in libstore's
// content-address.cc: "fixed:" + the ingestion prefix + the hash in Nix32 with its type).
import { encodeBase32 } from './base32.js';

/** From a derivation output's hash algorithm (`r:sha256`, `sha256`) and its hash in hex. */
export function fixedOutputContentAddress(hashAlgo: string, hashHex: string): string {
  const recursive = hashAlgo.startsWith('r:');
  const algo = recursive ? hashAlgo.slice(2) : hashAlgo;
  return `fixed:${recursive ? 'r:' : ''}${algo}:${encodeBase32(Buffer.from(hashHex, 'hex'))}`;
}
