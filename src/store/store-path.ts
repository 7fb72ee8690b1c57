// Store paths: `<storeDir>/<32 base32 chars>-<name>`, and how Nix computes them from a
// fingerprint `<type>:sha256:<hex>:<storeDir>:<name>`.
import { createHash } from 'node:crypto';
import { encodeBase32 } from './base32.js';
import { compressHash, Hash } from './hash.js';

export const HASH_PART_LENGTH = 32;
const NAME = /^[A-Za-z0-9+\-._?=]+$/;
const HASH_PART = /^[0-9abcdfghijklmnpqrsvwxyz]{32}$/;
const MAX_NAME = 211;

export class StorePathError extends Error {
  override name = 'StorePathError';
}

export interface StorePath {
  storeDir: string;
  hashPart: string;
  name: string;
  /** The full path. */
  path: string;
  /** `<hash>-<name>` */
  baseName: string;
}

export function validateName(name: string, what = 'store path name'): string {
  if (name.length === 0) throw new StorePathError(`${what} is empty`);
  if (name.length > MAX_NAME) throw new StorePathError(`${what} ${JSON.stringify(name.slice(0, 40))}… is longer than ${MAX_NAME} characters`);
  if (name.startsWith('.')) throw new StorePathError(`${what} ${JSON.stringify(name)} starts with a dot`);
  if (!NAME.test(name)) throw new StorePathError(`${what} ${JSON.stringify(name)} has characters other than A-Z a-z 0-9 + - . _ ? =`);
  return name;
}

/** Parses a full store path; the store dir is whatever comes before the last slash. */
export function parseStorePath(path: string): StorePath {
  const slash = path.lastIndexOf('/');
  if (slash <= 0 || !path.startsWith('/')) throw new StorePathError(`${JSON.stringify(path)} is not an absolute store path`);
  const storeDir = path.slice(0, slash);
  const baseName = path.slice(slash + 1);
  const hashPart = baseName.slice(0, HASH_PART_LENGTH);
  if (!HASH_PART.test(hashPart) || baseName[HASH_PART_LENGTH] !== '-') {
    throw new StorePathError(`${JSON.stringify(path)} does not end in <32 base32 characters>-<name>`);
  }
  const name = validateName(baseName.slice(HASH_PART_LENGTH + 1), `the name in ${path}`);
  return { storeDir, hashPart, name, path, baseName };
}

/** Nix's makeStorePath: the fingerprint hashed, compressed to 160 bits, base32. */
export function makeStorePath(type: string, innerHash: Hash, name: string, storeDir: string): string {
  validateName(name);
  const fingerprint = `${type}:${innerHash.algorithm}:${innerHash.hex}:${storeDir}:${name}`;
  const digest = createHash('sha256').update(fingerprint).digest();
  return `${storeDir}/${encodeBase32(compressHash(digest, 20))}-${name}`;
}

/** `type:ref1:ref2…` with references sorted, as for text and source paths. */
function typeWithReferences(type: string, references: Iterable<string>): string {
  return [type, ...[...new Set(references)].sort()].join(':');
}

/** The name of output `output` of a derivation called `drvName`. */
export function outputPathName(drvName: string, output: string): string {
  return output === 'out' ? drvName : `${drvName}-${output}`;
}

/** An input-addressed output's path, from the derivation's hash modulo. */
export function makeOutputPath(output: string, hashModulo: Hash, drvName: string, storeDir: string): string {
  return makeStorePath(`output:${output}`, hashModulo, outputPathName(drvName, output), storeDir);
}

/** A text path (how a .drv file gets its path): its contents' SHA-256 and its references. */
export function makeTextPath(name: string, contents: string | Uint8Array, references: Iterable<string>, storeDir: string): string {
  return makeStorePath(typeWithReferences('text', references), Hash.of('sha256', contents), name, storeDir);
}

/** A fixed-output path, from the content hash and whether it is of a NAR ("recursive") or flat file. */
export function makeFixedOutputPath(recursive: boolean, hash: Hash, name: string, storeDir: string): string {
  if (recursive && hash.algorithm === 'sha256') return makeStorePath('source', hash, name, storeDir);
  const inner = Hash.of('sha256', `fixed:out:${recursive ? 'r:' : ''}${hash.algorithm}:${hash.hex}:`);
  return makeStorePath('output:out', inner, name, storeDir);
}
