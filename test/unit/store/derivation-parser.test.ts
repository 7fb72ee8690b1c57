import { describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { DerivationError, parseDerivation, printDerivation, type Derivation } from '../../../src/store/derivation.js';
import { BASE32_ALPHABET } from '../../../src/store/base32.js';
import { HI_SHA256, nixStore, sh } from './drv-helpers.js';

const H = '0'.repeat(32);
const P = `/nix/store/${H}`;
/** A valid derivation with one of each thing, for cutting up. */
const drvText = (parts: { outputs?: string; inputDrvs?: string; inputSrcs?: string; platform?: string; env?: string } = {}) =>
  `Derive(${parts.outputs ?? `[("out","${P}-x","","")]`},${parts.inputDrvs ?? `[("${P}-in.drv",["out"])]`},${parts.inputSrcs ?? `["${P}-src"]`},"${parts.platform ?? 'x86_64-linux'}","/bin/sh",["-c","echo ü"],${parts.env ?? '[("out","x")]'})`;

function errorOf(text: string | Uint8Array): DerivationError {
  try {
    parseDerivation(text);
  } catch (err) {
    expect(err).toBeInstanceOf(DerivationError);
    return err as DerivationError;
  }
  throw new Error('parsed');
}

describe('the parser says what it expected and where', () => {
  test('accepts the template', () => {
    expect(printDerivation(parseDerivation(drvText()))).toBe(drvText());
  });

  test('syntax errors name the expected text and the byte offset', () => {
    expect(errorOf('Derive([("out"').message).toBe('expected ",", found the end of the text (at byte offset 14)');
    expect(errorOf('Derive([("out" ').offset).toBe(14);
    expect(errorOf('Derivation(').message).toMatch(/^expected "Derive\(", found "Derivati"/);
    expect(errorOf(drvText() + '\n').message).toBe(`unexpected text after the derivation (at byte offset ${Buffer.byteLength(drvText())})`);
    expect(errorOf('Derive([("out').message).toBe('unterminated string (at byte offset 9)');
  });

  test('offsets count UTF-8 bytes, not JS characters', () => {
    const text = drvText({ env: '[("ü☃🎉","x"("' });
    const err = errorOf(text);
    expect(err.offset).toBe(Buffer.byteLength(text.slice(0, text.lastIndexOf('("'))));
    expect(err.offset).not.toBe(text.lastIndexOf('("'));
  });

  test.each([
    ['a path that is not a store path', { outputs: '[("out","/tmp/x","","")]' }, 'outputs["out"].path', /"\/tmp\/x" is too short/],
    ['an unknown hash algorithm', { outputs: `[("out","${P}-x","sha3","${HI_SHA256}")]` }, 'outputs["out"].hashAlgo', /unknown hash algorithm "sha3"/],
    ['a fixed hash of the wrong length', { outputs: `[("out","${P}-x","sha1","${HI_SHA256}")]` }, 'outputs["out"].hash', /not a sha1 digest/],
    ['a hash with no algorithm', { outputs: `[("out","${P}-x","","${HI_SHA256}")]` }, 'outputs["out"].hash', /a hash without a hashAlgo/],
    ['a floating output with a path', { outputs: `[("out","${P}-x","r:sha256","")]` }, 'outputs["out"].path', /a path for an output with no fixed hash/],
    ['an output name a path cannot carry', { outputs: `[("o t","${P}-x","","")]` }, 'outputs', /output name "o t" has " "/],
    ['the same output twice', { outputs: `[("out","${P}-x","",""),("out","${P}-x","","")]` }, 'outputs', /output "out" appears twice/],
    ['an input derivation that is not a .drv', { inputDrvs: `[("${P}-in",["out"])]` }, 'inputDrvs', /does not end in \.drv/],
    ['the same input output twice', { inputDrvs: `[("${P}-in.drv",["out","out"])]` }, `inputDrvs["${P}-in.drv"]`, /output "out" appears twice/],
    ['an input source in another store', { inputSrcs: `["/gnu/store/${H}-src"]` }, 'inputSrcs', /is not in the store \/nix\/store/],
    ['an input source with a bad hash part', { inputSrcs: `["/nix/store/${'e'.repeat(32)}-src"]` }, 'inputSrcs', /"e" at position 0 of its hash part/],
    ['the same variable twice', { env: '[("a","1"),("a","2")]' }, 'env', /environment variable "a" appears twice/],
  ])('refuses %s, naming the field', (_, parts, field, why) => {
    const err = errorOf(drvText(parts));
    expect(err.field).toBe(field);
    expect(err.message).toMatch(why);
    expect(err.message.startsWith(`${field}: `)).toBe(true);
    expect(err.offset).toBeGreaterThan(0);
  });

  test.each([
    ['an escape Nix never writes', '[("a","\\x")]', /the escape \\x, which Nix never writes/, '\\x'],
    ['a raw newline', '[("a","1\n2")]', /a raw "\\n" in a string where Nix writes it escaped/, '\n'],
    ['a raw tab', '[("a","1\t2")]', /a raw "\\t"/, '\t'],
  ])('refuses %s in an escaped field, which could not print back the same', (_, env, why, at) => {
    const text = drvText({ env });
    const err = errorOf(text);
    expect(err.message).toMatch(why);
    expect(err.offset).toBe(Buffer.byteLength(text.slice(0, text.lastIndexOf(at)))); // "echo ü" comes before it
  });

  test('takes raw control characters where Nix writes strings unescaped', () => {
    const text = drvText({ platform: 'a\tb\nc' });
    expect(parseDerivation(text).platform).toBe('a\tb\nc');
    expect(printDerivation(parseDerivation(text))).toBe(text);
  });

  test('refuses escapes where Nix writes strings unescaped, which it could not print back', () => {
    const err = errorOf(drvText({ platform: 'x86\\n64' }));
    expect(err.message).toMatch(/a backslash escape where Nix writes strings unescaped/);
    expect(err.offset).toBe(drvText({ platform: 'x86\\n64' }).indexOf('\\'));
  });

  test('refuses a derivation with no outputs, and invalid UTF-8 with its offset', () => {
    expect(errorOf(drvText({ outputs: '[]' })).message).toMatch(/at least one output/);
    const bytes = Buffer.from(drvText());
    const at = bytes.indexOf('echo') + 2;
    bytes[at] = 0xff;
    expect(errorOf(bytes).message).toBe(`the text is not valid UTF-8 (at byte offset ${at})`);
  });

  test('parses bytes as it parses text', () => {
    expect(parseDerivation(Buffer.from(drvText()))).toEqual(parseDerivation(drvText()));
  });

  test('printing refuses a field Nix writes unescaped that would need escapes', () => {
    const drv = parseDerivation(drvText());
    drv.platform = 'a"b';
    expect(() => printDerivation(drv)).toThrow(/platform: "a\\"b" has a quote or backslash/);
  });
});

// ---- properties --------------------------------------------------------------------

const anyText = fc.string({ unit: 'grapheme', maxLength: 16 });
const hashPart = fc.stringMatching(new RegExp(`^[${BASE32_ALPHABET}]{32}$`));
const name = fc.stringMatching(/^[A-Za-z0-9+\-_?=][A-Za-z0-9+\-._?=]{0,15}$/);
const storePath = (suffix = '') => fc.tuple(hashPart, name).map(([h, n]) => `/nix/store/${h}-${n}${suffix}`);
const outputName = fc.stringMatching(/^[a-z]{1,6}$/);
const output = fc.oneof(
  storePath().map((path) => ({ path, hashAlgo: '', hash: '' })),
  fc.tuple(storePath(), fc.constantFrom('sha256', 'r:sha256', 'sha1', 'r:sha512'), fc.boolean()).map(([path, hashAlgo, hex]) => {
    const algo = hashAlgo.replace('r:', '');
    const size = { sha256: 32, sha1: 20, sha512: 64 }[algo]!;
    const bytes = Buffer.alloc(size, 7);
    return { path, hashAlgo, hash: hex ? bytes.toString('hex') : bytes.toString('base64') };
  }),
);

const arbitraryDerivation: fc.Arbitrary<Derivation> = fc
  .record({
    outputs: fc.uniqueArray(fc.tuple(outputName, output), { minLength: 1, maxLength: 4, selector: (t) => t[0] }),
    inputDrvs: fc.uniqueArray(fc.tuple(storePath('.drv'), fc.uniqueArray(outputName, { maxLength: 3 })), { maxLength: 3, selector: (t) => t[0] }),
    inputSrcs: fc.uniqueArray(storePath(), { maxLength: 3 }),
    platform: fc.string({ maxLength: 12 }).filter((s) => !/["\\]/.test(s)),
    builder: anyText,
    args: fc.array(anyText, { maxLength: 4 }),
    env: fc.uniqueArray(fc.tuple(anyText, anyText), { maxLength: 5, selector: (t) => t[0] }),
  })
  .map((r) => ({ ...r, outputs: new Map(r.outputs), inputDrvs: new Map(r.inputDrvs), env: new Map(r.env) }));

describe('properties', () => {
  const valid = readFileSync(nixStore.instantiate(sh('fuzz', 'echo > $out', `x = "a\\"b\\n\\tü"; outputHashAlgo = "sha256"; outputHash = "${HI_SHA256}";`))[0]!, 'utf8');

  test('random derivations round-trip print → parse → print, and parse to what was printed', () => {
    fc.assert(
      fc.property(arbitraryDerivation, (drv) => {
        const text = printDerivation(drv);
        const parsed = parseDerivation(text);
        expect(parsed).toEqual(drv);
        expect(printDerivation(parsed)).toBe(text);
      }),
      { numRuns: 300 },
    );
  });

  /** Parses, allowing only DerivationError out; returns whether it parsed. */
  const parsesOrRefuses = (input: string | Uint8Array): boolean => {
    try {
      const drv = parseDerivation(input);
      // Whatever parses must print back to the same text.
      expect(printDerivation(drv)).toBe(typeof input === 'string' ? input : Buffer.from(input).toString('utf8'));
      return true;
    } catch (err) {
      if (!(err instanceof DerivationError)) throw err;
      return false;
    }
  };

  test('random text and random bytes only ever raise DerivationError', () => {
    fc.assert(fc.property(fc.string({ maxLength: 200 }), (s) => void parsesOrRefuses(s)), { numRuns: 500 });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => void parsesOrRefuses(b)), { numRuns: 500 });
  });

  test('a real .drv mutated (bytes cut, inserted, flipped) only ever raises DerivationError', () => {
    const bytes = Buffer.from(valid);
    expect(parsesOrRefuses(bytes)).toBe(true);
    let refused = 0;
    fc.assert(
      fc.property(fc.nat({ max: bytes.length - 1 }), fc.nat({ max: 40 }), fc.uint8Array({ maxLength: 4 }), fc.nat({ max: 255 }), (at, cut, insert, flip) => {
        const mutated = Buffer.concat([bytes.subarray(0, at), insert, bytes.subarray(at + cut)]);
        if (!parsesOrRefuses(mutated)) refused++;
        const flipped = Buffer.from(bytes);
        flipped[at] = flip;
        parsesOrRefuses(flipped);
      }),
      { numRuns: 1000 },
    );
    expect(refused).toBeGreaterThan(500); // the mutations do reach the error paths
  });
});
