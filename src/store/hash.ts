// Hashes as Nix writes them: hex, Nix base32, base64, SRI (`sha256-<base64>`), and
// `<algo>:<base32|hex|base64>` (narinfo's NarHash, derivations' outputHash).
import { createHash } from 'node:crypto';
import { decodeBase32, encodeBase32, base32Length } from './base32.js';

export type HashAlgorithm = 'md5' | 'sha1' | 'sha256' | 'sha512';

const SIZES: Record<HashAlgorithm, number> = { md5: 16, sha1: 20, sha256: 32, sha512: 64 };

export class HashError extends Error {
  override name = 'HashError';
}

export class Hash {
  constructor(
    readonly algorithm: HashAlgorithm,
    readonly bytes: Uint8Array,
  ) {
    if (bytes.length !== SIZES[algorithm]) throw new HashError(`a ${algorithm} hash has ${SIZES[algorithm]} bytes, not ${bytes.length}`);
  }

  static of(algorithm: HashAlgorithm, data: string | Uint8Array): Hash {
    return new Hash(algorithm, createHash(algorithm).update(data).digest());
  }

  /** Parses `<algo>:<digest>` or SRI `<algo>-<base64>`; the digest may be hex, Nix base32 or base64. */
  static parse(text: string): Hash {
    const sri = /^(md5|sha1|sha256|sha512)-(.+)$/.exec(text);
    if (sri) return Hash.parseDigest(sri[1] as HashAlgorithm, sri[2]!, 'base64');
    const colon = text.indexOf(':');
    if (colon < 0) throw new HashError(`${JSON.stringify(text)} is not a hash of the form <algo>:<digest> or <algo>-<base64>`);
    return Hash.parseDigest(parseAlgorithm(text.slice(0, colon)), text.slice(colon + 1));
  }

  /** Parses a digest of a known algorithm, telling hex, base32 and base64 apart by length. */
  static parseDigest(algorithm: HashAlgorithm, digest: string, only?: 'base64'): Hash {
    const size = SIZES[algorithm];
    if (!only && digest.length === size * 2 && /^[0-9a-fA-F]+$/.test(digest)) return new Hash(algorithm, Buffer.from(digest, 'hex'));
    if (!only && digest.length === base32Length(size)) {
      try {
        return new Hash(algorithm, decodeBase32(digest, size));
      } catch (err) {
        throw new HashError(`bad ${algorithm} digest: ${(err as Error).message}`, { cause: err });
      }
    }
    if (digest.length === Math.ceil(size / 3) * 4 && /^[A-Za-z0-9+/]+={0,2}$/.test(digest)) {
      const bytes = Buffer.from(digest, 'base64');
      if (bytes.length === size) return new Hash(algorithm, bytes);
    }
    throw new HashError(`${JSON.stringify(digest)} is not a ${algorithm} digest in hex, Nix base32 or base64`);
  }

  get hex(): string {
    return Buffer.from(this.bytes).toString('hex');
  }

  get base32(): string {
    return encodeBase32(this.bytes);
  }

  get base64(): string {
    return Buffer.from(this.bytes).toString('base64');
  }

  /** `sha256-<base64>` */
  get sri(): string {
    return `${this.algorithm}-${this.base64}`;
  }

  /** `sha256:<base32>`, as narinfo files write NarHash and FileHash. */
  toString(): string {
    return `${this.algorithm}:${this.base32}`;
  }

  equals(other: Hash): boolean {
    return this.algorithm === other.algorithm && Buffer.from(this.bytes).equals(Buffer.from(other.bytes));
  }
}

export function parseAlgorithm(text: string): HashAlgorithm {
  if (text in SIZES) return text as HashAlgorithm;
  throw new HashError(`unknown hash algorithm ${JSON.stringify(text)} (expected md5, sha1, sha256 or sha512)`);
}

/** XORs a hash down to `size` bytes, as store paths use the first 160 bits' worth. */
export function compressHash(bytes: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < bytes.length; i++) out[i % size]! ^= bytes[i]!;
  return out;
}
