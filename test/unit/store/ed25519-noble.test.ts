// noble's curve arithmetic under kiln's adapter gives what kiln's own BigInt arithmetic
// gave before it was replaced (vectors recorded from that code), for the scalars Guix
// signing uses: above n, at 2^254 + 8·x, and on a point with a small-order part.
import { describe, expect, test } from '@jest/globals';
import { createHash } from 'node:crypto';
import { add, BASE, decodePoint, encodePoint, multiply, multiplyBase, N } from '../../../src/store/ed25519-point.js';
import { publicPoint, sign, verify } from '../../../src/store/ed25519-ecdsa.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// k (hex) -> k·BASE in RFC 8032 encoding, from the hand-written arithmetic.
const BASE_MULTIPLES: [string, string][] = [
  ['1', '5866666666666666666666666666666666666666666666666666666666666666'],
  ['2', 'c9a3f86aae465f0e56513864510f3997561fa2c9e85ea21dc2292309f3cd6022'],
  ['1eef', '1df504fdb5b4b1eade34336d07513c1fc123ce83eda7394d4fb30c41426424cc'],
  ['1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ec', '58666666666666666666666666666666666666666666666666666666666666e6'],
  ['1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3f2', 'edc876d6831fd2105d0b4389ca2e283166469289146e2ce06faefe98b22548df'],
  ['4000000000000000000000000000000000000000000000000000000000000008', 'c9877dfd1ccda6393a15aed8aba06798456798355f2a9da4e182fecd40290157'],
  ['ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff', 'db27fe4b7a4beb8c1b8c38a21e943a852304c9bb3035a5f36626b51162a68f9c'],
  ['121fa000a3723a57c24a442fe55618cf', 'c7c47a359069e98a78b5fbeafa8a9596e971efc8bcb4a16258b0cda4543a9182'],
];

// A point of order 8 (from libsodium's list of small-order points) added to BASE.
const ORDER_8 = 'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a';
const DIRTY = '98519eadf35b995233b51b5cd23e9cc5a28b639b5a4af0ec903cb960d81b7819';
const DIRTY_MULTIPLES: [string, string][] = [
  ['3', '528b312e93bc0c3705c89c20dcd85600e229ad3d6872b1c656d3873fbe62e6e2'],
  ['1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3f0', 'd4b4f5784868c3020403246717ec169ff79e26608ea126a1ab69ee77d1b16712'],
  ['80000000000000000000000000000000a6f7cef517bce6b2c09318d2e7ae9f73', '5b94d525f09dbb3f8bec71da454b8a76c21f9edc1a6b2c8a2650090c0c6a2bd6'],
];

describe('Ed25519 points through @noble/curves', () => {
  test.each(BASE_MULTIPLES)('0x%s · BASE is the recorded point, by both multiplies', (k, expected) => {
    expect(hex(encodePoint(multiplyBase(BigInt(`0x${k}`))))).toBe(expected);
    expect(hex(encodePoint(multiply(BigInt(`0x${k}`), BASE)))).toBe(expected);
  });

  test('a point with a small-order part keeps it under multiply, for scalars past n and 8n', () => {
    const dirty = add(BASE, decodePoint(Buffer.from(ORDER_8, 'hex')));
    expect(hex(encodePoint(dirty))).toBe(DIRTY);
    for (const [k, expected] of DIRTY_MULTIPLES) expect(hex(encodePoint(multiply(BigInt(`0x${k}`), dirty)))).toBe(expected);
    expect(BigInt(`0x${DIRTY_MULTIPLES[1]![0]}`)).toBe(N + 3n);
  });

  test('decodes the uncompressed and 0x40-prefixed forms libgcrypt accepts, and refuses points off the curve', () => {
    const p = multiplyBase(7919n);
    const { x, y } = p.toAffine();
    const be = (v: bigint): Buffer => Buffer.from(v.toString(16).padStart(64, '0'), 'hex');
    const uncompressed = Buffer.concat([Buffer.of(4), be(x), be(y)]);
    expect(hex(encodePoint(decodePoint(uncompressed)))).toBe(hex(encodePoint(p)));
    expect(hex(encodePoint(decodePoint(Buffer.concat([Buffer.of(0x40), encodePoint(p)]))))).toBe(hex(encodePoint(p)));
    const offCurve = Buffer.from(uncompressed);
    offCurve[64]! ^= 1;
    expect(() => decodePoint(offCurve)).toThrow(/not on the Ed25519 curve/);
    // y = p (2^255 - 19) is a non-canonical encoding that RFC 8032 refuses.
    const yIsP = Buffer.from('ed' + 'ff'.repeat(30) + '7f', 'hex');
    expect(() => decodePoint(yIsP)).toThrow(/not an Ed25519 point/);
  });
});

describe('ECDSA signatures over noble points', () => {
  const d = 0x4000000000000000000000000000000091a2b3c4855e6f7891a2b3c4855e6f78n;

  test('the public point and the RFC 6979 signatures are the recorded ones', () => {
    expect(hex(encodePoint(publicPoint(d)))).toBe('54cc1110a2e86de887a7c10a9e8e8994c13ea4c6fd4073356d6fba2ae7d76111');
    const recorded: [string, string, string][] = [
      ['kiln', '6fa203aae60a99b5f85b36e4a6162c15cf1219dc7afecd11b3a2235012615cc', '67b30977d2d443d7b3e69f1c47092d81dd5e0529f69886b47f0d1756fff199'],
      ['guix', '58090ea218ecb500f0837afb18c8d12a04f9df9d1247783b6ee94b396587f97', 'e8e3004e2dbae5b22c71de2ba51d904bf49a3fbe5bd992bcac500dc439840cc'],
    ];
    for (const [message, r, s] of recorded) {
      const hash = createHash('sha256').update(message).digest();
      const signature = sign(d, hash, 'sha256');
      expect([signature.r.toString(16), signature.s.toString(16)]).toEqual([r, s]);
      expect(verify(publicPoint(d), hash, signature)).toBe(true);
    }
  });
});
