// Canonical s-expressions as libgcrypt reads and prints them: Guix keeps its keys,
// ACLs and narinfo signatures in this form, so kiln must read every syntax libgcrypt
// accepts and print byte for byte what `gcry_sexp_sprint` (advanced mode) prints.
//
// Text here is a "binary string": one JS character per byte (Latin-1), because
// libgcrypt works on bytes and guile-gcrypt hands them over as ISO-8859-1 strings.

/** An atom is raw bytes; a list holds atoms and lists. */
export type Sexp = Uint8Array | readonly Sexp[];

export class SexpError extends Error {
  override name = 'SexpError';
}

const TOKEN_CHARS = /^[A-Za-z0-9\-./_:*+=]$/;
const WHITESPACE = new Set([' ', '\t', '\v', '\f', '\r', '\n']);

export function isAtom(s: Sexp): s is Uint8Array {
  return s instanceof Uint8Array;
}

/** An atom holding the Latin-1 bytes of `text` (tokens such as `ecc`, `sha256`). */
export function atom(text: string): Uint8Array {
  return latin1Bytes(text);
}

export function atomText(a: Uint8Array): string {
  return String.fromCharCode(...a);
}

/** Bytes of a binary string; refuses characters that are not bytes. */
export function latin1Bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff) throw new SexpError(`character U+${c.toString(16).padStart(4, '0')} at offset ${i} is not a byte`);
    out[i] = c;
  }
  return out;
}

/**
 * The first list, in depth-first order and including `sexp` itself, whose first element
 * is the token `name` — what `gcry_sexp_find_token` (and Guix's `find-sexp-token`) returns.
 */
export function findToken(sexp: Sexp, name: string): readonly Sexp[] | undefined {
  if (isAtom(sexp)) return undefined;
  const head = sexp[0];
  if (head !== undefined && isAtom(head) && atomText(head) === name) return sexp;
  for (const child of sexp) {
    const found = findToken(child, name);
    if (found) return found;
  }
  return undefined;
}

export function sexpEqual(a: Sexp, b: Sexp): boolean {
  if (isAtom(a) || isAtom(b)) {
    return isAtom(a) && isAtom(b) && a.length === b.length && a.every((x, i) => x === b[i]);
  }
  return a.length === b.length && a.every((x, i) => sexpEqual(x, b[i]!));
}

/**
 * Parses one s-expression in any of libgcrypt's syntaxes: canonical (`3:abc`), and the
 * advanced/transport forms (tokens, "quoted strings", #hex#, |base64|, with an optional
 * length before the last three). Display hints (`[…]`) are refused: libgcrypt itself
 * does not give them a meaning, and no Guix file holds one.
 */
export function parseSexp(text: string): Sexp {
  const p = new SexpParser(text);
  p.skipWhitespace();
  if (p.peek() !== '(') throw p.error('expected "(" to open the expression');
  const result = p.parseList();
  p.skipWhitespace();
  if (!p.atEnd()) throw p.error('unexpected text after the expression');
  return result;
}

class SexpParser {
  private pos = 0;
  constructor(private readonly text: string) {}

  atEnd(): boolean {
    return this.pos >= this.text.length;
  }

  peek(): string | undefined {
    return this.text[this.pos];
  }

  error(message: string): SexpError {
    return new SexpError(`s-expression: ${message} at offset ${this.pos}`);
  }

  skipWhitespace(): void {
    while (!this.atEnd() && WHITESPACE.has(this.text[this.pos]!)) this.pos++;
  }

  parseList(): Sexp[] {
    // Recursion depth is bounded by the input; keys and signatures nest 4 deep.
    this.pos++; // '('
    const items: Sexp[] = [];
    for (;;) {
      this.skipWhitespace();
      const c = this.peek();
      if (c === undefined) throw this.error('unclosed "("');
      if (c === ')') {
        this.pos++;
        return items;
      }
      items.push(c === '(' ? this.parseList() : this.parseAtom());
    }
  }

  private parseAtom(): Uint8Array {
    const c = this.peek()!;
    if (c >= '0' && c <= '9') return this.parseLengthPrefixed();
    if (c === '"') return this.parseQuoted();
    if (c === '#') return this.parseHex();
    if (c === '|') return this.parseBase64();
    if (c === '[' || c === ']') throw this.error('display hints are not supported');
    if (TOKEN_CHARS.test(c)) return this.parseToken();
    throw this.error(`unexpected character ${JSON.stringify(c)}`);
  }

  private parseToken(): Uint8Array {
    const start = this.pos;
    while (!this.atEnd() && TOKEN_CHARS.test(this.text[this.pos]!)) this.pos++;
    return latin1Bytes(this.text.slice(start, this.pos));
  }

  private parseLengthPrefixed(): Uint8Array {
    const start = this.pos;
    // libgcrypt refuses every length that starts with 0, even the "0:" it prints for an
    // empty atom in canonical form; kiln reads that one back.
    if (this.peek() === '0' && this.text[this.pos + 1] !== ':') throw this.error('a length may not begin with zero');
    while (/[0-9]/.test(this.peek() ?? '')) this.pos++;
    const length = Number(this.text.slice(start, this.pos));
    const c = this.peek();
    // As in libgcrypt, a length before a quoted, hex or base64 atom is ignored.
    if (c === '"') return this.parseQuoted();
    if (c === '#') return this.parseHex();
    if (c === '|') return this.parseBase64();
    if (c !== ':') throw this.error('expected ":" after a length');
    this.pos++;
    if (this.pos + length > this.text.length) throw this.error(`verbatim atom of ${length} bytes runs past the end`);
    const bytes = latin1Bytes(this.text.slice(this.pos, this.pos + length));
    this.pos += length;
    return bytes;
  }

  private parseQuoted(): Uint8Array {
    this.pos++; // '"'
    const out: number[] = [];
    const escapes: Record<string, number> = { b: 8, t: 9, v: 11, n: 10, f: 12, r: 13, '"': 34, "'": 39, '\\': 92 };
    for (;;) {
      const c = this.peek();
      if (c === undefined) throw this.error('unterminated quoted string');
      this.pos++;
      if (c === '"') return Uint8Array.from(out);
      if (c !== '\\') {
        out.push(...latin1Bytes(c));
        continue;
      }
      const e = this.peek();
      if (e === undefined) throw this.error('unterminated escape in quoted string');
      this.pos++;
      const simple = escapes[e];
      if (simple !== undefined) {
        out.push(simple);
      } else if (/[0-7]/.test(e)) {
        const digits = e + this.text.slice(this.pos, this.pos + 2);
        if (!/^[0-7]{3}$/.test(digits) || Number.parseInt(digits, 8) > 0xff) throw this.error('invalid octal escape');
        out.push(Number.parseInt(digits, 8));
        this.pos += 2;
      } else if (e === 'x') {
        const digits = this.text.slice(this.pos, this.pos + 2);
        if (!/^[0-9A-Fa-f]{2}$/.test(digits)) throw this.error('invalid hex escape');
        out.push(Number.parseInt(digits, 16));
        this.pos += 2;
      } else if (e === '\r' || e === '\n') {
        // A backslash before a line break continues the string (CR LF or LF CR).
        const other = e === '\r' ? '\n' : '\r';
        if (this.peek() === other) this.pos++;
      } else {
        throw this.error(`invalid escape "\\${e}" in quoted string`);
      }
    }
  }

  private parseHex(): Uint8Array {
    this.pos++; // '#'
    let digits = '';
    for (;;) {
      const c = this.peek();
      if (c === undefined) throw this.error('unterminated hex string');
      this.pos++;
      if (c === '#') break;
      if (/[0-9A-Fa-f]/.test(c)) digits += c;
      else if (!WHITESPACE.has(c)) throw this.error(`invalid character ${JSON.stringify(c)} in hex string`);
    }
    if (digits.length % 2 !== 0) throw this.error('odd number of hex digits');
    return Uint8Array.from(Buffer.from(digits, 'hex'));
  }

  private parseBase64(): Uint8Array {
    this.pos++; // '|'
    const start = this.pos;
    while (/[A-Za-z0-9+/=]/.test(this.peek() ?? '')) this.pos++;
    if (this.peek() !== '|') throw this.error('unterminated or invalid base64 string');
    const body = this.text.slice(start, this.pos);
    this.pos++;
    if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(body)) {
      throw this.error('malformed base64 string');
    }
    return Uint8Array.from(Buffer.from(body, 'base64'));
  }
}

/** The canonical (length-prefixed, whitespace-free) form, which libgcrypt hashes and stores. */
export function canonicalSexp(sexp: Sexp): string {
  if (isAtom(sexp)) return `${sexp.length}:${atomText(sexp)}`;
  return `(${sexp.map(canonicalSexp).join('')})`;
}

type AtomEncoding = 'string' | 'token' | 'hex';

// libgcrypt's `suitable_encoding`, with one deliberate difference: it lets a NUL byte
// inside an atom pass as printable (strchr finds the terminator), which prints atoms
// that no parser can read back; kiln prints those in hex.
function suitableEncoding(a: Uint8Array): AtomEncoding {
  if (a.length === 0) return 'string';
  if (a[0]! & 0x80 || a[0] === 0) return 'hex';
  let maybeToken = true;
  for (const b of a) {
    const escapable = b === 8 || b === 9 || b === 11 || b === 10 || b === 12 || b === 13 || b === 34 || b === 39 || b === 92;
    if ((b < 0x20 || (b >= 0x7f && b <= 0xa0)) && !escapable) return 'hex';
    if (maybeToken && !TOKEN_CHARS.test(String.fromCharCode(b))) maybeToken = false;
  }
  return maybeToken && !(a[0]! >= 0x30 && a[0]! <= 0x39) ? 'token' : 'string';
}

function quoteString(a: Uint8Array): string {
  const names: Record<number, string> = { 8: 'b', 9: 't', 11: 'v', 10: 'n', 12: 'f', 13: 'r', 34: '"', 39: "'", 92: '\\' };
  let out = '"';
  for (const b of a) {
    const name = names[b];
    if (name !== undefined) out += `\\${name}`;
    else if (b < 0x20 || (b >= 0x7f && b <= 0xa0)) out += `\\x${b.toString(16).padStart(2, '0')}`;
    else out += String.fromCharCode(b);
  }
  return `${out}"`;
}

function printAtom(a: Uint8Array): string {
  switch (suitableEncoding(a)) {
    case 'token':
      return atomText(a);
    case 'string':
      return quoteString(a);
    case 'hex':
      return `#${Buffer.from(a).toString('hex').toUpperCase()}#`;
  }
}

/**
 * The advanced form exactly as `gcry_sexp_sprint(…, GCRYSEXP_FMT_ADVANCED, …)` prints it
 * (Guile's `canonical-sexp->string`), including its line breaks and trailing newline:
 * Guix signs and stores these bytes, so the layout is part of the format.
 */
export function printSexp(sexp: Sexp): string {
  if (isAtom(sexp)) throw new SexpError('only a list can be printed as an s-expression');
  // A flat walk over open/atom/close events mirrors libgcrypt's loop over its buffer,
  // where each separator depends only on the next event.
  type Event = { kind: 'open' } | { kind: 'close' } | { kind: 'atom'; value: Uint8Array };
  const events: Event[] = [];
  const flatten = (s: Sexp): void => {
    if (isAtom(s)) {
      events.push({ kind: 'atom', value: s });
      return;
    }
    events.push({ kind: 'open' });
    s.forEach(flatten);
    events.push({ kind: 'close' });
  };
  flatten(sexp);

  let out = '';
  let indent = 0;
  events.forEach((event, i) => {
    const next = events[i + 1];
    if (event.kind === 'open') {
      if (indent) out += `\n${' '.repeat(indent)}`;
      out += '(';
      indent++;
    } else if (event.kind === 'close') {
      out += ')';
      indent--;
      if (next !== undefined && next.kind !== 'open') out += `\n${' '.repeat(indent)}`;
    } else {
      out += printAtom(event.value);
      if (next?.kind !== 'close') out += ' ';
    }
  });
  return `${out}\n`;
}

/**
 * Guile writes the binary string of a printed s-expression through a UTF-8 port (key
 * files, and `string->utf8` before the narinfo's base64), so a byte 0xA1–0xFF inside a
 * quoted atom travels as two bytes. These two undo and redo that step.
 */
export function sexpTextToUtf8(text: string): Uint8Array {
  latin1Bytes(text); // refuses characters that are not bytes
  return new Uint8Array(Buffer.from(text, 'utf8'));
}

export function sexpTextFromUtf8(bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (cause) {
    throw new SexpError('s-expression text is not valid UTF-8', { cause });
  }
}
