// Nix's base32: its own alphabet (no e, o, u, t) and its own bit order (the last
// character holds the lowest bits of the first byte), not RFC 4648.
export const BASE32_ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz';

const DIGITS = new Map([...BASE32_ALPHABET].map((c, i) => [c, i]));

export class Base32Error extends Error {
  override name = 'Base32Error';
}

/** Characters needed for `byteLength` bytes. */
export function base32Length(byteLength: number): number {
  return Math.ceil((byteLength * 8) / 5);
}

export function encodeBase32(bytes: Uint8Array): string {
  const len = base32Length(bytes.length);
  let out = '';
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    const c = (bytes[i]! >> j) | (i + 1 < bytes.length ? bytes[i + 1]! << (8 - j) : 0);
    out += BASE32_ALPHABET[c & 0x1f];
  }
  return out;
}

/** Decodes into `byteLength` bytes; the text must be exactly as long as that needs. */
export function decodeBase32(text: string, byteLength: number): Uint8Array {
  if (text.length !== base32Length(byteLength)) {
    throw new Base32Error(`base32 of ${byteLength} bytes has ${base32Length(byteLength)} characters, not ${text.length}`);
  }
  const bytes = new Uint8Array(byteLength);
  for (let n = 0; n < text.length; n++) {
    const ch = text[text.length - n - 1]!;
    const digit = DIGITS.get(ch);
    if (digit === undefined) throw new Base32Error(`${JSON.stringify(ch)} is not a Nix base32 character (in ${JSON.stringify(text)})`);
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    bytes[i]! |= (digit << j) & 0xff;
    const carry = digit >> (8 - j);
    if (i + 1 < byteLength) bytes[i + 1]! |= carry;
    else if (carry) throw new Base32Error(`${JSON.stringify(text)} has bits beyond ${byteLength} bytes`);
  }
  return bytes;
}
