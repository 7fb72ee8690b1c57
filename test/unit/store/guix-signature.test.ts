import { describe, expect, test, beforeAll } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseNarInfo, renderNarInfo, renderSignedPart, type NarInfo } from '../../../src/store/narinfo.js';
import {
  generateGuixKey,
  guixKeyFromSecret,
  parseGuixPublicKey,
  parseGuixSecretKey,
  renderGuixPublicKey,
  renderGuixSecretKey,
  GuixKeyError,
  type GuixSecretKey,
} from '../../../src/store/guix-key.js';
import {
  parseSignatureField,
  signHash,
  signNarInfoText,
  verifyNarInfoSignature,
  verifySignatureSexp,
} from '../../../src/store/guix-signature.js';
import { printSexp, sexpTextToUtf8, sexpTextFromUtf8, parseSexp, findToken, atom, atomText, isAtom, type Sexp } from '../../../src/store/sexp.js';
import { BASE, encodePoint, decodePoint, multiply, N, toAffine } from '../../../src/store/ed25519-point.js';
import { sign as ecdsaSign, verify as ecdsaVerify } from '../../../src/store/ed25519-ecdsa.js';

const SCRIPT = resolve('test/fixtures/guix/guix-sig.scm');
const work = mkdtempSync(join(tmpdir(), 'kiln-guix-sig-'));

function guile(args: string[], input?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('guile', ['-s', SCRIPT, ...args], {
    input,
    env: { ...process.env, GUILE_AUTO_COMPILE: '0' },
    encoding: 'utf8',
  });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function guileOk(args: string[], input?: string): string {
  const r = guile(args, input);
  if (r.status !== 0) throw new Error(`guile ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

let counter = 0;
function file(contents: string | Uint8Array): string {
  const path = join(work, `f${counter++}`);
  writeFileSync(path, contents);
  return path;
}

/** Guile's verdict (the status Guix's signature-case would take) on a narinfo text. */
function guileVerdict(narinfo: string, pub: Uint8Array): { status: number; verdict: string } {
  const r = guile(['verify', file(narinfo), file(pub)]);
  return { status: r.status, verdict: r.stdout.trim() };
}

function sampleInfo(): NarInfo {
  return {
    storePath: '/gnu/store/0a9lpnaz5dnz8slp4knmp6ihy0bp91y8-hello-2.12.1',
    files: [
      { url: 'nar/gzip/0a9lpnaz5dnz8slp4knmp6ihy0bp91y8-hello-2.12.1', compression: 'gzip', fileSize: 62118 },
      { url: 'nar/zstd/0a9lpnaz5dnz8slp4knmp6ihy0bp91y8-hello-2.12.1', compression: 'zstd', fileSize: 59871 },
    ],
    narHash: 'sha256:1fwk0ncwn9ybsn6nqmxdjbgkh2ndq2zbrmrp8q6l0gnhwj5hmn8h',
    narSize: 217552,
    references: ['0a9lpnaz5dnz8slp4knmp6ihy0bp91y8-hello-2.12.1', 'ln6hxqjvz6m9gdd9s97pivlb01q6ia6v-glibc-2.35'],
    deriver: 'p2hmi0pvnz1xgsd3nh5scw0rp4v0lfxc-hello-2.12.1.drv',
    sigs: [],
    extra: [],
  };
}

function signedByKiln(info: NarInfo, key: GuixSecretKey): string {
  return renderNarInfo({ ...info, signature: signNarInfoText(renderSignedPart(info), key, 'kiln.example') }, 'guix');
}

let guileSec: Uint8Array;
let guilePub: Uint8Array;

beforeAll(() => {
  const sec = join(work, 'signing-key.sec');
  const pub = join(work, 'signing-key.pub');
  guileOk(['generate-key', sec, pub]);
  guileSec = readFileSync(sec);
  guilePub = readFileSync(pub);
});

describe('Guix key files', () => {
  test('reads the files libgcrypt generates and writes them back byte for byte', () => {
    const secret = parseGuixSecretKey(guileSec);
    expect(Buffer.from(renderGuixSecretKey(secret))).toEqual(Buffer.from(guileSec));
    expect(Buffer.from(renderGuixPublicKey(secret.publicKey))).toEqual(Buffer.from(guilePub));
    expect(parseGuixPublicKey(guilePub).sexp).toEqual(secret.publicKey.sexp);
  });

  test("q in libgcrypt's key file is d·G in the 32-byte Ed25519 encoding", () => {
    const secret = parseGuixSecretKey(guileSec);
    const q = findToken(parseSexp(sexpTextFromUtf8(guilePub)), 'q')![1] as Uint8Array;
    expect(q.length).toBe(32);
    expect(Buffer.from(encodePoint(multiply(secret.d, BASE)))).toEqual(Buffer.from(q));
  });

  test('refuses an EdDSA key, a key on another curve, and a private key whose q is not d·G', () => {
    const eddsa = '(public-key (ecc (curve Ed25519) (flags eddsa) (q #' + 'AB'.repeat(32) + '#)))';
    expect(() => parseGuixPublicKey(Buffer.from(eddsa))).toThrow(/flags eddsa/);
    expect(() => parseGuixPublicKey(Buffer.from('(public-key (ecc (curve NIST P-256) (q #04#)))'))).toThrow(GuixKeyError);
    const a = generateGuixKey();
    const b = generateGuixKey();
    const mixed = printSexp([atom('private-key'), [atom('ecc'), [atom('curve'), atom('Ed25519')],
      findToken(b.publicKey.sexp, 'q')!, findToken(a.sexp, 'd')!]]);
    expect(() => parseGuixSecretKey(sexpTextToUtf8(mixed))).toThrow(/q is not d·G/);
  });
});

describe('ECDSA on Ed25519 matches libgcrypt bit for bit', () => {
  test('kiln and libgcrypt make the same signature for the same key and hashes (RFC 6979 k)', () => {
    const secret = parseGuixSecretKey(guileSec);
    const hashes = Array.from({ length: 40 }, (_, i) =>
      i < 2 ? Buffer.alloc(32, i === 0 ? 0 : 0xff) : randomBytes(32),
    );
    const fromGuile = guileOk(['sign-hashes', file(guileSec)], hashes.map((h) => h.toString('hex')).join('\n') + '\n')
      .trim()
      .split('\n');
    expect(fromGuile).toHaveLength(hashes.length);
    hashes.forEach((h, i) => {
      const sigVal = findToken(signHash(h, secret), 'sig-val')!;
      const kiln = Buffer.from(sexpTextToUtf8(printSexp(sigVal))).toString('base64');
      expect(kiln).toBe(fromGuile[i]);
    });
  });

  test('verification refuses a signature for a different hash or under a different key', () => {
    const key = generateGuixKey();
    const hash = createHash('sha256').update('kiln').digest();
    const sig = ecdsaSign(key.d, hash, 'sha256');
    expect(ecdsaVerify(key.publicKey.point, hash, sig)).toBe(true);
    expect(ecdsaVerify(key.publicKey.point, createHash('sha256').update('kilN').digest(), sig)).toBe(false);
    expect(ecdsaVerify(generateGuixKey().publicKey.point, hash, sig)).toBe(false);
    expect(ecdsaVerify(key.publicKey.point, hash, { r: sig.r, s: N - sig.s })).toBe(false);
    expect(ecdsaVerify(key.publicKey.point, hash, { r: 0n, s: sig.s })).toBe(false);
  });

  test('point encoding round-trips, and the base point has the standard Ed25519 encoding', () => {
    expect(Buffer.from(encodePoint(BASE)).toString('hex')).toBe('5866666666666666666666666666666666666666666666666666666666666666');
    for (let i = 1n; i < 20n; i++) {
      const p = multiply(i * 7919n, BASE);
      expect(toAffine(decodePoint(encodePoint(p)))).toEqual(toAffine(p));
    }
    expect(() => decodePoint(new Uint8Array(31))).toThrow(/32 bytes/);
  });
});

describe('libgcrypt (as Guix uses it) judges kiln signatures', () => {
  test('a narinfo kiln signs with a Guile-made key is valid to Guix', () => {
    const text = signedByKiln(sampleInfo(), parseGuixSecretKey(guileSec));
    expect(guileVerdict(text, guilePub)).toEqual({ status: 0, verdict: 'valid-signature' });
  });

  test('the Signature field kiln writes is byte-identical to the one guix publish writes', () => {
    const signedPart = renderSignedPart(sampleInfo());
    const fromGuile = guileOk(['sign', file(signedPart), file(guileSec), file(guilePub), 'kiln.example']);
    expect(signNarInfoText(signedPart, parseGuixSecretKey(guileSec), 'kiln.example')).toBe(fromGuile);
  });

  test('Guix refuses a kiln-signed narinfo whose NarSize or references changed after signing', () => {
    const text = signedByKiln(sampleInfo(), parseGuixSecretKey(guileSec));
    expect(guileVerdict(text.replace('NarSize: 217552', 'NarSize: 217553'), guilePub)).toEqual({
      status: 1,
      verdict: 'hash-mismatch',
    });
    expect(guileVerdict(text.replace(' ln6hxqjvz6m9gdd9s97pivlb01q6ia6v-glibc-2.35', ''), guilePub).verdict).toBe('hash-mismatch');
  });

  test('Guix refuses a signature whose r was altered, and a signature by an unauthorized key', () => {
    const key = parseGuixSecretKey(guileSec);
    const info = sampleInfo();
    const signedPart = renderSignedPart(info);
    const digest = createHash('sha256').update(signedPart).digest();
    // Flip the last bit of r inside the expression tree, whatever form it prints in.
    const flipR = (e: Sexp): Sexp => {
      if (isAtom(e)) return e;
      if (e[0] !== undefined && isAtom(e[0]) && atomText(e[0]) === 'r') {
        const r = Uint8Array.from(e[1] as Uint8Array);
        r[r.length - 1]! ^= 1;
        return [e[0], r];
      }
      return e.map(flipR);
    };
    const good = signHash(digest, key);
    const bad = printSexp(flipR(good));
    expect(bad).not.toBe(printSexp(good));
    const field = `1;kiln.example;${Buffer.from(sexpTextToUtf8(bad)).toString('base64')}`;
    const tampered = renderNarInfo({ ...info, signature: field }, 'guix');
    expect(guileVerdict(tampered, guilePub).verdict).toBe('invalid-signature');
    expect(verifyNarInfoSignature(tampered, [key.publicKey])).toBe('invalid-signature');

    const stranger = generateGuixKey();
    const byStranger = signedByKiln(info, stranger);
    expect(guileVerdict(byStranger, guilePub).verdict).toBe('unauthorized-key');
    expect(verifyNarInfoSignature(byStranger, [key.publicKey])).toBe('unauthorized-key');
  });

  test('a key pair kiln generates is read by libgcrypt, and its signatures verify there', () => {
    const key = generateGuixKey();
    const sec = renderGuixSecretKey(key);
    const pub = renderGuixPublicKey(key.publicKey);
    const text = signedByKiln(sampleInfo(), key);
    expect(guileVerdict(text, pub)).toEqual({ status: 0, verdict: 'valid-signature' });
    // And libgcrypt signing with kiln's key files gives kiln's bytes.
    const signedPart = renderSignedPart(sampleInfo());
    expect(guileOk(['sign', file(signedPart), file(sec), file(pub), 'h'])).toBe(signNarInfoText(signedPart, key, 'h'));
  });
});

describe('signatures whose hash libgcrypt prints as a quoted string', () => {
  // About one hash in 10^4 has only printable bytes, and libgcrypt then prints it as a
  // "string" whose bytes above 0x7F Guile passes through UTF-8 before the base64.
  test('kiln writes and reads them exactly as Guix does', () => {
    const base = sampleInfo();
    let info: NarInfo | undefined;
    for (let size = 1; size < 2_000_000 && !info; size++) {
      const candidate = { ...base, narSize: size };
      const digest = createHash('sha256').update(renderSignedPart(candidate)).digest();
      if (printSexp([atom('x'), digest]).includes('"') && digest.some((b) => b > 0xa0)) info = candidate;
    }
    expect(info).toBeDefined();
    const signedPart = renderSignedPart(info!);
    const key = parseGuixSecretKey(guileSec);
    const field = signNarInfoText(signedPart, key, 'h');
    expect(guileOk(['sign', file(signedPart), file(guileSec), file(guilePub), 'h'])).toBe(field);
    const text = renderNarInfo({ ...info!, signature: field }, 'guix');
    expect(guileVerdict(text, guilePub).verdict).toBe('valid-signature');
    expect(verifyNarInfoSignature(text, [key.publicKey])).toBe('valid-signature');
  });
});

describe('kiln judges signatures libgcrypt made', () => {
  test('accepts a narinfo Guile signed the way guix publish does, and refuses it once altered', () => {
    const info = sampleInfo();
    const signedPart = renderSignedPart(info);
    const field = guileOk(['sign', file(signedPart), file(guileSec), file(guilePub), 'ci.guix.example']);
    const text = renderNarInfo({ ...info, signature: field }, 'guix');
    const authorized = [parseGuixPublicKey(guilePub)];
    expect(verifyNarInfoSignature(text, authorized)).toBe('valid-signature');
    expect(parseNarInfo(text).signature).toBe(field);
    expect(parseSignatureField(field).hostname).toBe('ci.guix.example');
    expect(verifySignatureSexp(parseSignatureField(field).signature)).toBe(true);

    expect(verifyNarInfoSignature(text.replace('hello-2.12.1.drv', 'hello-2.12.2.drv'), authorized)).toBe('hash-mismatch');
    expect(verifyNarInfoSignature(text, [generateGuixKey().publicKey])).toBe('unauthorized-key');
    // The NAR blocks below the Signature line are not signed, as in Guix.
    expect(verifyNarInfoSignature(text.replace('FileSize: 62118', 'FileSize: 1'), authorized)).toBe('valid-signature');
  });

  test('reports unsigned and corrupt signatures the way Guix tells them apart', () => {
    const info = sampleInfo();
    const authorized = [parseGuixPublicKey(guilePub)];
    expect(verifyNarInfoSignature(renderNarInfo(info, 'guix'), authorized)).toBe('unsigned');
    const corrupt = renderNarInfo({ ...info, signature: '1;host;KGE=' }, 'guix'); // "(a" : not an s-expression
    expect(verifyNarInfoSignature(corrupt, authorized)).toBe('corrupt-signature');
    const version2 = renderNarInfo({ ...info, signature: '2;host;KGEp' }, 'guix');
    expect(verifyNarInfoSignature(version2, authorized)).toBe('corrupt-signature');
    expect(guileVerdict(corrupt, guilePub).status).toBe(1);
  });
});

describe('secret scalars', () => {
  test("kiln's keys are drawn like libgcrypt's: 2^254 ≤ d < 2^255, a multiple of 8", () => {
    for (let i = 0; i < 10; i++) {
      const { d } = generateGuixKey();
      expect(d >= 2n ** 254n && d < 2n ** 255n && d % 8n === 0n).toBe(true);
    }
    expect(toAffine(guixKeyFromSecret(2n ** 254n).publicKey.point)).toEqual(toAffine(multiply(2n ** 254n, BASE)));
  });
});
