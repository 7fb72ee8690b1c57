// Nix-style signatures: ed25519 over a store path's fingerprint, with keys in the
// `<name>:<base64>` files `nix-store --generate-binary-cache-key` writes (the secret is
// libsodium's 64 bytes, seed ‖ public key) and `Sig: <name>:<base64>` narinfo lines.
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import type { NarInfo } from './narinfo.js';

export class NixSignatureError extends Error {
  override name = 'NixSignatureError';
}

export interface NixPublicKey {
  readonly name: string;
  /** The 32-byte ed25519 public key. */
  readonly key: Uint8Array;
}

export interface NixSecretKey {
  readonly name: string;
  /** The 32-byte ed25519 seed (the first half of libsodium's secret key). */
  readonly seed: Uint8Array;
  readonly publicKey: NixPublicKey;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const NIX_BASE32_SHA256 = /^sha256:[0-9abcdfghijklmnpqrsvwxyz]{52}$/;

function splitKey(text: string, what: string): { name: string; bytes: Uint8Array } {
  const trimmed = text.trim();
  const colon = trimmed.indexOf(':');
  if (colon <= 0 || colon === trimmed.length - 1) throw new NixSignatureError(`${what} is not "<name>:<base64>"`);
  const body = trimmed.slice(colon + 1);
  if (!BASE64.test(body)) throw new NixSignatureError(`${what} "${trimmed.slice(0, colon)}" does not hold base64`);
  return { name: trimmed.slice(0, colon), bytes: new Uint8Array(Buffer.from(body, 'base64')) };
}

const b64url = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64url');

/** Key objects of the keys signing: a coordinator signs every narinfo with the same one. */
const privateKeyObjects = new WeakMap<NixSecretKey, KeyObject>();

function privateKeyObject(key: NixSecretKey): KeyObject {
  let object = privateKeyObjects.get(key);
  if (!object) {
    object = createPrivateKey({
      key: { kty: 'OKP', crv: 'Ed25519', d: b64url(key.seed), x: b64url(key.publicKey.key) },
      format: 'jwk',
    });
    privateKeyObjects.set(key, object);
  }
  return object;
}

function publicKeyObject(key: NixPublicKey): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64url(key.key) }, format: 'jwk' });
}

function publicKeyFromSeed(seed: Uint8Array): Uint8Array {
  const jwk = createPublicKey(
    createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: b64url(seed), x: b64url(new Uint8Array(32)) }, format: 'jwk' }),
  ).export({ format: 'jwk' });
  return new Uint8Array(Buffer.from(jwk.x!, 'base64url'));
}

/** Reads a secret key file's text. */
export function parseNixSecretKey(text: string): NixSecretKey {
  const { name, bytes } = splitKey(text, 'secret key');
  if (bytes.length !== 64) throw new NixSignatureError(`secret key "${name}" has ${bytes.length} bytes, not 64`);
  const seed = bytes.slice(0, 32);
  const stored = bytes.slice(32);
  // libsodium signs with the stored public half; a mismatch would make bad signatures.
  if (Buffer.compare(publicKeyFromSeed(seed), stored) !== 0) {
    throw new NixSignatureError(`secret key "${name}": its public half does not match its seed`);
  }
  return { name, seed, publicKey: { name, key: stored } };
}

/** Reads a public key file's text, or a `trusted-public-keys` entry. */
export function parseNixPublicKey(text: string): NixPublicKey {
  const { name, bytes } = splitKey(text, 'public key');
  if (bytes.length !== 32) throw new NixSignatureError(`public key "${name}" has ${bytes.length} bytes, not 32`);
  return { name, key: bytes };
}

/** The secret key file's text, as nix-store writes it (no trailing newline). */
export function renderNixSecretKey(key: NixSecretKey): string {
  return `${key.name}:${Buffer.concat([key.seed, key.publicKey.key]).toString('base64')}`;
}

export function renderNixPublicKey(key: NixPublicKey): string {
  return `${key.name}:${Buffer.from(key.key).toString('base64')}`;
}

export function generateNixKey(name: string): NixSecretKey {
  if (name === '' || name.includes(':') || /\s/.test(name)) throw new NixSignatureError(`key name "${name}" is not usable`);
  const jwk = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
  const seed = new Uint8Array(Buffer.from(jwk.d!, 'base64url'));
  return { name, seed, publicKey: { name, key: new Uint8Array(Buffer.from(jwk.x!, 'base64url')) } };
}

/**
 * What Nix signs for a store path: `1;<path>;<narHash>;<narSize>;<refs>` with the
 * references as full store paths, sorted and comma-separated (ValidPathInfo::fingerprint).
 * The NAR hash must already be in Nix's `sha256:<base32>` form, which Nix prints here.
 */
export function fingerprint(storePath: string, narHash: string, narSize: number, references: readonly string[]): string {
  if (!NIX_BASE32_SHA256.test(narHash)) {
    throw new NixSignatureError(`cannot sign ${storePath}: NarHash "${narHash}" is not sha256 in Nix base32`);
  }
  if (!Number.isSafeInteger(narSize) || narSize <= 0) {
    throw new NixSignatureError(`cannot sign ${storePath}: its NAR size is not known`);
  }
  return `1;${storePath};${narHash};${narSize};${[...references].sort().join(',')}`;
}

/** The fingerprint of a narinfo, its reference base names put in its store directory. */
export function narInfoFingerprint(info: NarInfo): string {
  const storeDir = info.storePath.slice(0, info.storePath.lastIndexOf('/'));
  return fingerprint(info.storePath, info.narHash, info.narSize, info.references.map((r) => `${storeDir}/${r}`));
}

/** A `Sig:` value: `<key name>:<base64 of the 64-byte signature>`. */
export function signDetached(data: string, key: NixSecretKey): string {
  const signature = sign(null, Buffer.from(data, 'utf8'), privateKeyObject(key));
  return `${key.name}:${signature.toString('base64')}`;
}

/** True if `sig` is a good signature of `data` by the key of that name in `keys`. */
export function verifyDetached(data: string, sig: string, keys: readonly NixPublicKey[]): boolean {
  const colon = sig.indexOf(':');
  if (colon <= 0) return false;
  const key = keys.find((k) => k.name === sig.slice(0, colon));
  if (!key) return false;
  const body = sig.slice(colon + 1);
  const bytes = BASE64.test(body) ? Buffer.from(body, 'base64') : undefined;
  if (bytes?.length !== 64) throw new NixSignatureError(`signature by "${key.name}" is not 64 bytes of base64`);
  return verify(null, Buffer.from(data, 'utf8'), publicKeyObject(key), bytes);
}

/** The narinfo with one more `Sig:` line, by `key`. */
export function signNarInfo(info: NarInfo, key: NixSecretKey): NarInfo {
  return { ...info, sigs: [...info.sigs, signDetached(narInfoFingerprint(info), key)] };
}

/** How many distinct trusted keys signed the narinfo validly (Nix's checkSignatures). */
export function countValidSignatures(info: NarInfo, keys: readonly NixPublicKey[]): number {
  const data = narInfoFingerprint(info);
  const signers = new Set<string>();
  for (const sig of info.sigs) {
    try {
      if (verifyDetached(data, sig, keys)) signers.add(sig.slice(0, sig.indexOf(':')));
    } catch (error) {
      if (!(error instanceof NixSignatureError)) throw error;
    }
  }
  return signers.size;
}
