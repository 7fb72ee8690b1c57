// The cache's signing keys: a Nix key (the files `nix-store --generate-binary-cache-key`
// writes) and a Guix key (the files `guix archive --generate-key` writes). Given by the
// operator, or generated at first start into the data directory.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import {
  generateGuixKey,
  parseGuixSecretKey,
  renderGuixPublicKey,
  renderGuixSecretKey,
  type GuixSecretKey,
} from '../store/guix-key.js';
import {
  generateNixKey,
  parseNixSecretKey,
  renderNixPublicKey,
  renderNixSecretKey,
  type NixSecretKey,
} from '../store/nix-signature.js';

export interface CacheKeys {
  nix: NixSecretKey;
  /** `name:base64`, what Nix users put in trusted-public-keys. */
  nixPublicKey: string;
  guix: GuixSecretKey;
  /** The Guix public key file's bytes, served at /signing-key.pub as `guix publish` does. */
  guixPublicKey: Uint8Array;
  /** The host name in Guix `Signature:` lines. */
  hostname: string;
  /** Names this set of keys and host name: a narinfo signed under another set is not served. */
  fingerprint: string;
}

export interface CacheKeyOptions {
  dataDir: string;
  /** A secret key file from `nix-store --generate-binary-cache-key`. */
  nixKeyFile?: string;
  /** A secret key file from `guix archive --generate-key` (signing-key.sec). */
  guixKeyFile?: string;
  /** The Nix key's name for generated keys (default `kiln-<hostname>-1`). */
  keyName?: string;
  hostname?: string;
}

function readOrCreate<T>(path: string, parse: (bytes: Buffer) => T, create: () => { value: T; bytes: Uint8Array | string }): T {
  try {
    return parse(readFileSync(path));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read the key ${path}: ${(err as Error).message}`, { cause: err });
  }
  const { value, bytes } = create();
  try {
    writeFileSync(path, bytes, { mode: 0o600, flag: 'wx' });
    return value;
  } catch (err) {
    // Another process created it first: use that one.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return parse(readFileSync(path));
    throw err;
  }
}

export function loadCacheKeys(opts: CacheKeyOptions): CacheKeys {
  const hostname = opts.hostname ?? osHostname();
  const nix = opts.nixKeyFile
    ? parseNixSecretKey(readFileSync(opts.nixKeyFile, 'utf8'))
    : readOrCreate(join(opts.dataDir, 'cache-key.sec'), (b) => parseNixSecretKey(b.toString('utf8')), () => {
        const key = generateNixKey(opts.keyName ?? `kiln-${hostname}-1`);
        return { value: key, bytes: renderNixSecretKey(key) };
      });
  const guix = opts.guixKeyFile
    ? parseGuixSecretKey(readFileSync(opts.guixKeyFile))
    : readOrCreate(join(opts.dataDir, 'signing-key.sec'), (b) => parseGuixSecretKey(b), () => {
        const key = generateGuixKey();
        return { value: key, bytes: renderGuixSecretKey(key) };
      });
  const nixPublicKey = renderNixPublicKey(nix.publicKey);
  const guixPublicKey = renderGuixPublicKey(guix.publicKey);
  const fingerprint = createHash('sha256').update(`${nixPublicKey}\n${hostname}\n`).update(guixPublicKey).digest('hex').slice(0, 32);
  return { nix, nixPublicKey, guix, guixPublicKey, hostname, fingerprint };
}
