import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import {
  parseNarInfo,
  renderNarInfo,
  renderSignedPart,
  NarInfoError,
  type NarInfo,
  type NarInfoStyle,
} from '../../../src/store/narinfo.js';

// Written by `nix copy --to file://…` (Nix 2.8) for a path added with nix-store --add.
const NIX_NARINFO = `StorePath: /nix/store/rfj8pqlnbli40wwfbgv4xx52d6970haq-f.txt
URL: nar/0akwn84qaxx45gv1jsl055a1gax7ncqpq4g5azb0nq3qdxf81xwh.nar.xz
Compression: xz
FileHash: sha256:0akwn84qaxx45gv1jsl055a1gax7ncqpq4g5azb0nq3qdxf81xwh
FileSize: 136
NarHash: sha256:1yziamqpkzq99al2dkkhrbxfgzvlf5w3pnbkq1hdpbcv8fwf5pzy
NarSize: 128
References: 
CA: fixed:r:sha256:1yziamqpkzq99al2dkkhrbxfgzvlf5w3pnbkq1hdpbcv8fwf5pzy
`;

const NIX_SIGNED = `StorePath: /nix/store/5rmh8yyk2vcr3zbz1x6nfbi5nrsq6mk5-top
URL: nar/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar.xz
Compression: xz
FileHash: sha256:1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3
FileSize: 196
NarHash: sha256:0i8wsj6zbb6bpf3mswr1g2wa6hwxqh3gnjszlv9cpcvyfyb37fd3
NarSize: 184
References: 9m0gb6nwq2xq2cz0mmnz5i3l4x2rjrmg-leaf 5rmh8yyk2vcr3zbz1x6nfbi5nrsq6mk5-top
Deriver: 2b2mqh8b6x3wm7a9qvq7y8r8w0kx2g8h-top.drv
System: x86_64-linux
Sig: cache.example.org-1:3Dn1ZqjHV2GhTH7d0HGg6y9lYl0KAT5dwNYlkPvBmIo6Z8bLqM9IbJYjZRq7qEq4Ux5bNpg0n2Lh4x4m1D0lBA==
Sig: other-1:Xc4hKjYt8v2o7Jm9rC0x6ZrFf1s3mN2qL8pQ5wE7yT0uI9oA4sD6fG1hJ3kL5zX7cV9bN2mQ4wE6rT8yU0iO2A==
`;

// The shape `guix publish` writes (narinfo-string): the signed part, the Signature,
// then one URL/Compression/FileSize block per compression.
const GUIX_NARINFO = `StorePath: /gnu/store/0a9lpnaz5dnz8slp4knmp6ihy0bp91y8-hello-2.12.1
NarHash: sha256:1fwk0ncwn9ybsn6nqmxdjbgkh2ndq2zbrmrp8q6l0gnhwj5hmn8h
NarSize: 217552
References: 0a9lpnaz5dnz8slp4knmp6ihy0bp91y8-hello-2.12.1 ln6hxqjvz6m9gdd9s97pivlb01q6ia6v-glibc-2.35
Deriver: p2hmi0pvnz1xgsd3nh5scw0rp4v0lfxc-hello-2.12.1.drv
Signature: 1;ci.guix.gnu.org;KHNpZ25hdHVyZSAKIChkYXRhIAogIChmbGFncyByZmM2OTc5KQogIClgICkK
URL: nar/gzip/0a9lpnaz5dnz8slp4knmp6ihy0bp91y8-hello-2.12.1
Compression: gzip
FileSize: 62118
URL: nar/lzip/0a9lpnaz5dnz8slp4knmp6ihy0bp91y8-hello-2.12.1
Compression: lzip
URL: nar/zstd/0a9lpnaz5dnz8slp4knmp6ihy0bp91y8-hello-2.12.1
Compression: zstd
FileSize: 59871
`;

describe('parsing', () => {
  test('reads every field of a narinfo Nix wrote', () => {
    expect(parseNarInfo(NIX_NARINFO)).toEqual({
      storePath: '/nix/store/rfj8pqlnbli40wwfbgv4xx52d6970haq-f.txt',
      files: [
        {
          url: 'nar/0akwn84qaxx45gv1jsl055a1gax7ncqpq4g5azb0nq3qdxf81xwh.nar.xz',
          compression: 'xz',
          fileHash: 'sha256:0akwn84qaxx45gv1jsl055a1gax7ncqpq4g5azb0nq3qdxf81xwh',
          fileSize: 136,
        },
      ],
      narHash: 'sha256:1yziamqpkzq99al2dkkhrbxfgzvlf5w3pnbkq1hdpbcv8fwf5pzy',
      narSize: 128,
      references: [],
      sigs: [],
      ca: 'fixed:r:sha256:1yziamqpkzq99al2dkkhrbxfgzvlf5w3pnbkq1hdpbcv8fwf5pzy',
      extra: [],
    } satisfies NarInfo);
  });

  test('reads several Sig lines, Deriver and System', () => {
    const info = parseNarInfo(NIX_SIGNED);
    expect(info.sigs.map((s) => s.split(':')[0])).toEqual(['cache.example.org-1', 'other-1']);
    expect(info.deriver).toBe('2b2mqh8b6x3wm7a9qvq7y8r8w0kx2g8h-top.drv');
    expect(info.system).toBe('x86_64-linux');
    expect(info.references).toHaveLength(2);
  });

  test('reads the NAR blocks of a guix publish narinfo, a missing FileSize included', () => {
    const info = parseNarInfo(GUIX_NARINFO);
    expect(info.files).toEqual([
      { url: 'nar/gzip/0a9lpnaz5dnz8slp4knmp6ihy0bp91y8-hello-2.12.1', compression: 'gzip', fileSize: 62118 },
      { url: 'nar/lzip/0a9lpnaz5dnz8slp4knmp6ihy0bp91y8-hello-2.12.1', compression: 'lzip' },
      { url: 'nar/zstd/0a9lpnaz5dnz8slp4knmp6ihy0bp91y8-hello-2.12.1', compression: 'zstd', fileSize: 59871 },
    ]);
    expect(info.signature).toMatch(/^1;ci\.guix\.gnu\.org;/);
  });

  test('keeps unknown fields in their order, and reads unknown-deriver as no deriver', () => {
    const text = NIX_NARINFO.replace('NarSize: 128\n', 'NarSize: 128\nX-Zeta: 1\nDeriver: unknown-deriver\nX-Alpha: two words\n');
    const info = parseNarInfo(text);
    expect(info.extra).toEqual([
      { name: 'X-Zeta', value: '1' },
      { name: 'X-Alpha', value: 'two words' },
    ]);
    expect(info.deriver).toBeUndefined();
  });

  test.each([
    ['no StorePath', NIX_NARINFO.replace(/^StorePath.*\n/, ''), /no StorePath field/],
    ['no URL', NIX_NARINFO.replace(/^URL.*\n/m, ''), /line 2: NAR fields without a URL/],
    ['a second NarHash', NIX_NARINFO + 'NarHash: sha256:x\n', /line 10: NarHash appears again \(first on line 6\)/],
    ['a bad NarSize', NIX_NARINFO.replace('NarSize: 128', 'NarSize: 12x'), /line 7: NarSize "12x" is not a non-negative integer/],
    ['a bad FileSize', NIX_NARINFO.replace('FileSize: 136', 'FileSize: -1'), /line 5: FileSize/],
    ['a line without a field name', NIX_NARINFO.replace('Compression: xz', 'Compression xz'), /line 3: expected "Name: value"/],
    ['an empty line', NIX_NARINFO.replace('FileSize: 136\n', 'FileSize: 136\n\n'), /line 6: expected "Name: value"/],
    ['a relative StorePath', NIX_NARINFO.replace('StorePath: /nix/store/', 'StorePath: nix/store/'), /line 1: StorePath .* not an absolute/],
    ['a reference with a slash', NIX_NARINFO.replace('References: ', 'References: /nix/store/a-b'), /line 8: reference/],
  ])('refuses a narinfo with %s, naming the line', (_, text, message) => {
    expect(() => parseNarInfo(text)).toThrow(NarInfoError);
    expect(() => parseNarInfo(text)).toThrow(message);
  });
});

describe('rendering', () => {
  test('renders a Nix narinfo back byte for byte in Nix’s order', () => {
    expect(renderNarInfo(parseNarInfo(NIX_NARINFO), 'nix')).toBe(NIX_NARINFO);
    expect(renderNarInfo(parseNarInfo(NIX_SIGNED), 'nix')).toBe(NIX_SIGNED);
  });

  test('renders a guix publish narinfo back byte for byte in Guix’s order', () => {
    expect(renderNarInfo(parseNarInfo(GUIX_NARINFO), 'guix')).toBe(GUIX_NARINFO);
  });

  test('the Guix signed part is the text above the Signature line', () => {
    const info = parseNarInfo(GUIX_NARINFO);
    expect(renderSignedPart(info)).toBe(GUIX_NARINFO.slice(0, GUIX_NARINFO.indexOf('Signature:')));
  });

  test('a CA goes after Sig in Nix\'s layout, and after the Guix Signature, outside what it signs, in Guix\'s', () => {
    const ca = 'fixed:r:sha256:1yziamqpkzq99al2dkkhrbxfgzvlf5w3pnbkq1hdpbcv8fwf5pzy';
    const info = { ...parseNarInfo(GUIX_NARINFO), ca };
    expect(renderSignedPart(info)).toBe(renderSignedPart(parseNarInfo(GUIX_NARINFO)));
    const text = renderNarInfo(info, 'guix');
    expect(text).toContain(`\nSignature: ${info.signature!}\nCA: ${ca}\nURL: `);
    expect(parseNarInfo(text).ca).toBe(ca);
    expect(renderNarInfo({ ...parseNarInfo(NIX_SIGNED), ca }, 'nix')).toMatch(/\nSig: other-1:.*\nCA: fixed:r:sha256:\w+\n$/);
  });

  test('writes unknown fields after the known ones, just above a Guix Signature, in both layouts', () => {
    const info = { ...parseNarInfo(NIX_SIGNED), extra: [{ name: 'X-Kiln', value: 'yes' }] };
    expect(renderNarInfo(info, 'nix').trimEnd().split('\n').pop()).toBe('X-Kiln: yes');
    const withSignature = { ...info, signature: '1;h;AAAA' };
    expect(renderNarInfo(withSignature, 'nix')).toMatch(/\nSig: other-1:.*\nX-Kiln: yes\nSignature: 1;h;AAAA\n$/);
    expect(renderNarInfo(withSignature, 'guix')).toContain('X-Kiln: yes\nSignature: 1;h;AAAA\nURL: ');
  });

  test('refuses values with line breaks, known names as extra fields, and a narinfo without a NAR', () => {
    const info = parseNarInfo(NIX_NARINFO);
    expect(() => renderNarInfo({ ...info, system: 'x86_64-linux\nSig: forged' })).toThrow(/contains a line break/);
    expect(() => renderNarInfo({ ...info, extra: [{ name: 'Sig', value: 'a' }] })).toThrow(/cannot be an extra field/);
    expect(() => renderNarInfo({ ...info, files: [] })).toThrow(/at least one NAR/);
  });
});

const value = fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !/[\r\n]/.test(s));
const baseName = fc.stringMatching(/^[0-9a-z]{4,8}-[a-z.+-]{1,8}$/);
const narFile = fc.record(
  {
    url: value,
    compression: value,
    fileHash: value,
    fileSize: fc.nat(),
  },
  { requiredKeys: ['url'] },
);
const narInfoArb: fc.Arbitrary<NarInfo> = fc
  .record({
    storePath: baseName.map((b) => `/nix/store/${b}`),
    files: fc.array(narFile, { minLength: 1, maxLength: 3 }),
    narHash: value,
    narSize: fc.nat(),
    references: fc.array(baseName, { maxLength: 4 }),
    deriver: fc.option(baseName.map((b) => `${b}.drv`), { nil: undefined }),
    system: fc.option(value, { nil: undefined }),
    sigs: fc.array(value, { maxLength: 3 }),
    ca: fc.option(value, { nil: undefined }),
    signature: fc.option(value, { nil: undefined }),
    extra: fc.array(
      fc.record({ name: fc.stringMatching(/^X-[A-Za-z0-9]{1,6}$/), value: fc.string({ maxLength: 10 }).filter((s) => !/[\r\n]/.test(s)) }),
      { maxLength: 3 },
    ),
  })
  .map((info) => {
    // Absent optional fields are left out rather than set to undefined, as the parser does.
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(info)) if (v !== undefined) out[k] = v;
    return out as unknown as NarInfo;
  });

describe('properties', () => {
  test.each<NarInfoStyle>(['nix', 'guix'])('render(%s) then parse gives the same narinfo', (style) => {
    fc.assert(
      fc.property(narInfoArb, (info) => {
        expect(parseNarInfo(renderNarInfo(info, style))).toEqual(info);
      }),
    );
  });

  test('random text raises only NarInfoError', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
        try {
          parseNarInfo(text);
        } catch (error) {
          expect(error).toBeInstanceOf(NarInfoError);
        }
      }),
    );
  });

  test('random lines of known fields with random values raise only NarInfoError', () => {
    const names = ['StorePath', 'URL', 'Compression', 'FileHash', 'FileSize', 'NarHash', 'NarSize', 'References',
      'Deriver', 'System', 'Sig', 'CA', 'Signature', 'X-Other'];
    const lineArb = fc.tuple(fc.constantFrom(...names), fc.oneof(fc.string({ maxLength: 12 }), fc.bigInt().map(String)));
    fc.assert(
      fc.property(fc.array(lineArb, { maxLength: 14 }), (lines) => {
        const text = lines.map(([n, v]) => `${n}: ${v}\n`).join('');
        try {
          parseNarInfo(text);
        } catch (error) {
          expect(error).toBeInstanceOf(NarInfoError);
        }
      }),
    );
  });

  test('a rendered narinfo with characters changed raises only NarInfoError', () => {
    fc.assert(
      fc.property(
        narInfoArb,
        fc.constantFrom<NarInfoStyle>('nix', 'guix'),
        fc.array(fc.tuple(fc.nat(), fc.constantFrom(':', '\n', ' ', 'x', '9', '-', '')), { maxLength: 5 }),
        (info, style, edits) => {
          const chars = [...renderNarInfo(info, style)];
          for (const [at, c] of edits) chars[at % chars.length] = c;
          try {
            parseNarInfo(chars.join(''));
          } catch (error) {
            expect(error).toBeInstanceOf(NarInfoError);
          }
        },
      ),
    );
  });
});
