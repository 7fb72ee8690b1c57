import { expect, test } from '@jest/globals';
import { storableText } from '../../../src/db/storable-text.js';

test('NULs and lone surrogates become U+FFFD; pairs and other text stay', () => {
  expect(storableText('a\u0000b')).toBe('a\uFFFDb');
  expect(storableText('\uD800x\uDC00')).toBe('\uFFFDx\uFFFD');
  expect(storableText('ok \uD83D\uDE00 é')).toBe('ok \uD83D\uDE00 é');
});

test('long text is cut, marked, and never in the middle of a surrogate pair', () => {
  expect(storableText('abcdef', 4)).toBe('abc…');
  expect(storableText('ab\uD83D\uDE00cd', 4)).toBe('ab…');
});
