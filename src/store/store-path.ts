// Store paths: `<storeDir>/<32 base32 chars>-<name>` in any store dir (/nix/store,
// /gnu/store), and how Nix computes them from `<type>:sha256:<hex>:<storeDir>:<name>`.
import { createHash } from 'node:crypto';
import { BASE32_ALPHABET, encodeBase32 } from './base32.js';
import { compressHash, Hash } from './hash.js';

export const HASH_PART_LENGTH = 32;
export const MAX_NAME_LENGTH = 211;
const NAME_CHAR = /[A-Za-z0-9+\-._?=]/;

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

/**
 * Checks a store path name as Nix does, plus the rule of Guix and Nix before 2.4 that a
 * name may not start with '.' (so neither '.' nor '..' can be one).
 */
export function validateName(name: string, what = 'store path name'): string {
  if (name.length === 0) throw new StorePathError(`${what} is empty`);
  if (name.length > MAX_NAME_LENGTH) {
    throw new StorePathError(`${what} ${JSON.stringify(name.slice(0, 40) + '…')} has ${name.length} characters, more than ${MAX_NAME_LENGTH}`);
  }
  if (name.startsWith('.')) throw new StorePathError(`${what} ${JSON.stringify(name)} starts with '.'`);
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    if (!NAME_CHAR.test(c)) {
      throw new StorePathError(`${what} ${JSON.stringify(name)} has ${JSON.stringify(c)} at position ${i}; only A-Z a-z 0-9 + - . _ ? = are allowed`);
    }
  }
  return name;
}

/** A store dir is absolute and canonical: no trailing slash, no empty, '.' or '..' parts. */
export function validateStoreDir(storeDir: string): string {
  const parts = storeDir.split('/');
  if (!storeDir.startsWith('/') || storeDir.length < 2 || parts.slice(1).some((p) => p === '' || p === '.' || p === '..')) {
    throw new StorePathError(`store dir ${JSON.stringify(storeDir)} is not a canonical absolute path (like /nix/store)`);
  }
  return storeDir;
}

/**
 * Parses a full store path. The store dir is whatever precedes the last slash unless
 * `expectedStoreDir` is given, in which case the path must be directly inside it.
 */
export function parseStorePath(path: string, expectedStoreDir?: string): StorePath {
  const slash = path.lastIndexOf('/');
  if (slash <= 0 || !path.startsWith('/')) throw new StorePathError(`${JSON.stringify(path)} is not an absolute store path`);
  const storeDir = path.slice(0, slash);
  try {
    validateStoreDir(storeDir);
  } catch (err) {
    throw new StorePathError(`${JSON.stringify(path)}: ${(err as Error).message}`);
  }
  if (expectedStoreDir !== undefined && storeDir !== expectedStoreDir) {
    throw new StorePathError(`${JSON.stringify(path)} is not in the store ${expectedStoreDir}`);
  }
  const baseName = path.slice(slash + 1);
  if (baseName.length < HASH_PART_LENGTH + 2) {
    throw new StorePathError(`${JSON.stringify(path)} is too short: a store path ends in <${HASH_PART_LENGTH} base32 characters>-<name>`);
  }
  const hashPart = baseName.slice(0, HASH_PART_LENGTH);
  for (let i = 0; i < HASH_PART_LENGTH; i++) {
    if (!BASE32_ALPHABET.includes(hashPart[i]!)) {
      throw new StorePathError(`${JSON.stringify(path)} has ${JSON.stringify(hashPart[i])} at position ${i} of its hash part, which is not a Nix base32 character`);
    }
  }
  if (baseName[HASH_PART_LENGTH] !== '-') {
    throw new StorePathError(`${JSON.stringify(path)} has no '-' between its ${HASH_PART_LENGTH}-character hash part and its name`);
  }
  const name = validateName(baseName.slice(HASH_PART_LENGTH + 1), `the name in ${path}`);
  return { storeDir, hashPart, name, path, baseName };
}

/**
 * Nix's makeStorePath: the fingerprint `<type>:<algo>:<hex>:<storeDir>:<name>` hashed
 * with SHA-256, XOR-folded to 160 bits, in Nix base32. A string inner hash is SHA-256 hex.
 */
export function makeStorePath(type: string, innerHash: Hash | string, name: string, storeDir: string): string {
  validateName(name);
  validateStoreDir(storeDir);
  const inner = typeof innerHash === 'string' ? Hash.parseDigest('sha256', innerHash) : innerHash;
  const fingerprint = `${type}:${inner.algorithm}:${inner.hex}:${storeDir}:${name}`;
  const digest = createHash('sha256').update(fingerprint).digest();
  return `${storeDir}/${encodeBase32(compressHash(digest, 20))}-${name}`;
}

/**
 * `type:ref1:ref2…`: references are part of the fingerprint so that two texts that are
 * equal but refer to different paths get different paths. Sorted as Nix's StorePathSet.
 */
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

/**
 * A fixed-output path from the content hash, of a NAR ("recursive") or of a flat file.
 * Nix gives recursive SHA-256 the same path as an added source tree (`source` type), so
 * a fetched tree and the same tree added from disk are one path.
 */
export function makeFixedOutputPath(recursive: boolean, hash: Hash, name: string, storeDir: string): string {
  if (recursive && hash.algorithm === 'sha256') return makeStorePath('source', hash, name, storeDir);
  const inner = Hash.of('sha256', `fixed:out:${recursive ? 'r:' : ''}${hash.algorithm}:${hash.hex}:`);
  return makeStorePath('output:out', inner, name, storeDir);
}
