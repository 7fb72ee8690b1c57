import { describe, expect, test, beforeAll } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, cpSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { nix, nixEnv } from '../../helpers/nix.js';
import { instantiate } from '../../helpers/nix.js';
import { shDrv } from '../../helpers/derivations.js';
import { parseNarInfo, renderNarInfo, type NarInfo } from '../../../src/store/narinfo.js';
import {
  countValidSignatures,
  fingerprint,
  generateNixKey,
  narInfoFingerprint,
  parseNixPublicKey,
  parseNixSecretKey,
  renderNixPublicKey,
  renderNixSecretKey,
  signDetached,
  signNarInfo,
  verifyDetached,
  NixSignatureError,
} from '../../../src/store/nix-signature.js';

const work = mkdtempSync(join(tmpdir(), 'kiln-nix-sig-'));

/** Runs `nix store verify` against a binary cache directory; returns its exit status. */
function nixVerify(cacheDir: string, publicKey: string, path: string): { status: number; stderr: string } {
  // A fresh cache home per call: Nix caches narinfos it has read, and a test that
  // rewrites one must have Nix read the new text.
  const env = { ...nixEnv(), XDG_CACHE_HOME: mkdtempSync(join(work, 'xdg-')) };
  try {
    execFileSync(
      'nix',
      ['store', 'verify', '--store', `file://${cacheDir}`, '--sigs-needed', '1', '--option', 'trusted-public-keys', publicKey, path],
      { env, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    return { status: 0, stderr: '' };
  } catch (error) {
    const e = error as { status: number; stderr: Buffer };
    return { status: e.status, stderr: e.stderr.toString() };
  }
}

function narinfoFile(cacheDir: string, path: string): string {
  const hash = path.split('/').pop()!.split('-')[0]!;
  return join(cacheDir, `${hash}.narinfo`);
}

/** A copy of `source` whose narinfo for `path` is replaced by `text`. */
function cacheWith(source: string, path: string, text: string): string {
  const dir = mkdtempSync(join(work, 'cache-'));
  cpSync(source, dir, { recursive: true });
  writeFileSync(narinfoFile(dir, path), text);
  return dir;
}

let top: string;
let leaf: string;
let unsignedCache: string;
let nixSecret: string;
let nixPublic: string;

beforeAll(() => {
  const nonce = randomUUID().slice(0, 8);
  const [drv] = instantiate(`let leaf = ${shDrv(`sig-leaf-${nonce}`, 'echo leaf > $out')};
    in ${shDrv(`sig-top-${nonce}`, 'echo ${leaf} > $out')}`);
  top = nix('nix-store', ['--realise', drv!]).toString().trim();
  leaf = readFileSync(top, 'utf8').trim();
  unsignedCache = join(work, 'unsigned');
  nix('nix', ['copy', '--to', `file://${unsignedCache}`, top]);
  nix('nix-store', ['--generate-binary-cache-key', 'nix-made-1', join(work, 'nix.sec'), join(work, 'nix.pub')]);
  nixSecret = readFileSync(join(work, 'nix.sec'), 'utf8');
  nixPublic = readFileSync(join(work, 'nix.pub'), 'utf8');
});

describe('Nix key files', () => {
  test('reads the key files nix-store --generate-binary-cache-key writes and writes them back identically', () => {
    const secret = parseNixSecretKey(nixSecret);
    expect(secret.name).toBe('nix-made-1');
    expect(renderNixSecretKey(secret)).toBe(nixSecret);
    expect(renderNixPublicKey(secret.publicKey)).toBe(nixPublic);
    expect(parseNixPublicKey(nixPublic)).toEqual(secret.publicKey);
  });

  test('refuses a secret key whose public half does not belong to its seed', () => {
    const other = generateNixKey('nix-made-1');
    const forged = renderNixSecretKey({ ...parseNixSecretKey(nixSecret), publicKey: other.publicKey });
    expect(() => parseNixSecretKey(forged)).toThrow(/does not match its seed/);
  });

  test('refuses keys of the wrong length or without a name', () => {
    expect(() => parseNixPublicKey('k:AAAA')).toThrow(NixSignatureError);
    expect(() => parseNixPublicKey(':' + Buffer.alloc(32).toString('base64'))).toThrow(/<name>:<base64>/);
    expect(() => parseNixSecretKey(nixPublic)).toThrow(/32 bytes, not 64/);
  });
});

describe('fingerprints', () => {
  test('sorts full reference paths and refuses hashes not in Nix base32', () => {
    const h = `sha256:${'0'.repeat(52)}`;
    expect(fingerprint('/nix/store/b-x', h, 10, ['/nix/store/c-z', '/nix/store/a-y'])).toBe(
      `1;/nix/store/b-x;${h};10;/nix/store/a-y,/nix/store/c-z`,
    );
    expect(() => fingerprint('/nix/store/b-x', 'sha256-AAAA', 10, [])).toThrow(/not sha256 in Nix base32/);
    expect(() => fingerprint('/nix/store/b-x', h, 0, [])).toThrow(/size is not known/);
  });
});

describe('real Nix judges kiln signatures', () => {
  test('nix store verify refuses the unsigned cache entry, then accepts it signed by kiln', () => {
    expect(nixVerify(unsignedCache, nixPublic, top).status).not.toBe(0);
    const info = parseNarInfo(readFileSync(narinfoFile(unsignedCache, top), 'utf8'));
    expect(info.references).toContain(leaf.split('/').pop());
    const signed = signNarInfo(info, parseNixSecretKey(nixSecret));
    const cache = cacheWith(unsignedCache, top, renderNarInfo(signed, 'nix'));
    expect(nixVerify(cache, nixPublic, top)).toEqual({ status: 0, stderr: '' });
  });

  test('nix store verify refuses a kiln-signed narinfo whose references were changed after signing', () => {
    const info = parseNarInfo(readFileSync(narinfoFile(unsignedCache, top), 'utf8'));
    const signed = signNarInfo(info, parseNixSecretKey(nixSecret));
    const tampered: NarInfo = { ...signed, references: [] };
    const cache = cacheWith(unsignedCache, top, renderNarInfo(tampered, 'nix'));
    const result = nixVerify(cache, nixPublic, top);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/untrusted/);
  });

  test('nix store verify refuses a signature by another key that claims the trusted name', () => {
    const info = parseNarInfo(readFileSync(narinfoFile(unsignedCache, top), 'utf8'));
    const impostor = generateNixKey('nix-made-1');
    const cache = cacheWith(unsignedCache, top, renderNarInfo(signNarInfo(info, impostor), 'nix'));
    expect(nixVerify(cache, nixPublic, top).status).toBe(2);
  });

  test('a key pair kiln generates is accepted by nix store sign and nix store verify', () => {
    const key = generateNixKey(`kiln-made-${randomUUID().slice(0, 6)}`);
    const secretFile = join(work, 'kiln.sec');
    writeFileSync(secretFile, renderNixSecretKey(key));
    const cache = join(work, 'kiln-key-cache');
    nix('nix', ['store', 'sign', '--key-file', secretFile, top]);
    nix('nix', ['copy', '--to', `file://${cache}`, top]);
    expect(nixVerify(cache, renderNixPublicKey(key.publicKey), top).status).toBe(0);
    const info = parseNarInfo(readFileSync(narinfoFile(cache, top), 'utf8'));
    expect(countValidSignatures(info, [key.publicKey])).toBe(1);
  });
});

describe('kiln judges signatures real Nix made', () => {
  let signedByNix: NarInfo;

  beforeAll(() => {
    nix('nix', ['store', 'sign', '--key-file', join(work, 'nix.sec'), top]);
    const cache = join(work, 'nix-signed');
    nix('nix', ['copy', '--to', `file://${cache}`, top]);
    expect(readdirSync(cache)).toContain(narinfoFile(cache, top).split('/').pop());
    signedByNix = parseNarInfo(readFileSync(narinfoFile(cache, top), 'utf8'));
  });

  test('accepts the Sig line nix store sign made, with the fingerprint Nix signed', () => {
    const publicKey = parseNixPublicKey(nixPublic);
    expect(countValidSignatures(signedByNix, [publicKey])).toBe(1);
    const sig = signedByNix.sigs.find((s) => s.startsWith('nix-made-1:'))!;
    expect(verifyDetached(narInfoFingerprint(signedByNix), sig, [publicKey])).toBe(true);
    // ed25519 is deterministic, so kiln signing the same fingerprint gives Nix's bytes.
    expect(signDetached(narInfoFingerprint(signedByNix), parseNixSecretKey(nixSecret))).toBe(sig);
  });

  test('refuses it once NarSize, NarHash or the references no longer match', () => {
    const publicKey = parseNixPublicKey(nixPublic);
    expect(countValidSignatures({ ...signedByNix, narSize: signedByNix.narSize + 1 }, [publicKey])).toBe(0);
    expect(countValidSignatures({ ...signedByNix, narHash: `sha256:${'1'.repeat(52)}` }, [publicKey])).toBe(0);
    expect(countValidSignatures({ ...signedByNix, references: [] }, [publicKey])).toBe(0);
  });

  test('ignores signatures by keys it was not told to trust', () => {
    expect(countValidSignatures(signedByNix, [generateNixKey('nix-made-1').publicKey])).toBe(0);
    expect(countValidSignatures(signedByNix, [])).toBe(0);
  });
});
