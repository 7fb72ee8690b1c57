// The small piece of ATerm that .drv files use: quoted strings with Nix's escapes,
// lists and tuples. Errors name the byte offset (in the UTF-8 file, not the JS string)
// where the text stopped making sense, so a person can find it with `cut -b`/`dd`.

/** The one error the derivation parser, printer and checks raise about a derivation. */
export class DerivationError extends Error {
  override name = 'DerivationError';
  /** Byte offset into the .drv text, for syntax errors. */
  readonly offset: number | undefined;
  /** The field at fault, e.g. `outputs["dev"].path`, for semantic errors. */
  readonly field: string | undefined;

  constructor(message: string, opts: { offset?: number; field?: string; cause?: unknown } = {}) {
    const where = opts.offset === undefined ? '' : ` (at byte offset ${opts.offset})`;
    super(`${opts.field ? `${opts.field}: ` : ''}${message}${where}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.offset = opts.offset;
    this.field = opts.field;
  }
}

/** Decodes a .drv file; Nix strings are bytes, but kiln only takes UTF-8 ones. */
export function decodeDerivationText(bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new DerivationError('the text is not valid UTF-8', { offset: firstInvalidUtf8(bytes) });
  }
}

// Only on the error path: feed the decoder a byte at a time until it refuses one.
function firstInvalidUtf8(bytes: Uint8Array): number {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let sequenceStart = 0;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte < 0x80 || byte >= 0xc0) sequenceStart = i;
    try {
      decoder.decode(bytes.subarray(i, i + 1), { stream: true });
    } catch {
      return i;
    }
  }
  return sequenceStart; // a sequence cut short by the end of the file
}

export class ATermReader {
  private pos = 0;
  constructor(private readonly text: string) {}

  /** The current position, for offset() and fail() later. */
  mark(): number {
    return this.pos;
  }

  /** The current position as a byte offset into the UTF-8 text. */
  offset(at = this.pos): number {
    return Buffer.byteLength(this.text.slice(0, at), 'utf8');
  }

  fail(message: string, at = this.pos): never {
    throw new DerivationError(message, { offset: this.offset(at) });
  }

  expect(literal: string): void {
    if (!this.text.startsWith(literal, this.pos)) {
      const found = this.text.slice(this.pos, this.pos + Math.max(literal.length, 8));
      this.fail(`expected ${JSON.stringify(literal)}, found ${found ? JSON.stringify(found) : 'the end of the text'}`);
    }
    this.pos += literal.length;
  }

  /** Consumes `literal` if it is next. */
  accept(literal: string): boolean {
    if (!this.text.startsWith(literal, this.pos)) return false;
    this.pos += literal.length;
    return true;
  }

  /**
   * A string in a field Nix writes with printString. Nix's reader takes any `\x` as x
   * and raw control characters, but its printer only ever writes \" \\ \n \r \t and
   * never a raw newline, CR or tab there; anything else would not print back the same.
   */
  string(): string {
    const start = this.pos;
    this.expect('"');
    let out = '';
    for (;;) {
      const i = this.nextSpecial();
      if (i < 0) this.fail('unterminated string', start);
      out += this.text.slice(this.pos, i);
      const c = this.text[i];
      if (c === '"') {
        this.pos = i + 1;
        return out;
      }
      if (c !== '\\') this.fail(`a raw ${JSON.stringify(c)} in a string where Nix writes it escaped`, i);
      const e = this.text[i + 1];
      if (e === undefined) this.fail('unterminated string', start);
      const unescaped = UNESCAPES[e];
      if (unescaped === undefined) this.fail(`the escape \\${e}, which Nix never writes`, i);
      out += unescaped;
      this.pos = i + 2;
    }
  }

  private nextSpecial(): number {
    for (let i = this.pos; i < this.text.length; i++) {
      const c = this.text.charCodeAt(i);
      if (c === 34 /* " */ || c === 92 /* \ */ || c === 10 || c === 13 || c === 9) return i;
    }
    return -1;
  }

  /**
   * A string in a field Nix writes with printUnquotedString (paths, output names, hash
   * algorithms, the platform): Nix never escapes there, so a backslash means a file
   * Nix did not write, and one kiln could not print back byte for byte.
   */
  rawString(): string {
    const start = this.pos;
    this.expect('"');
    const end = this.text.indexOf('"', this.pos);
    if (end < 0) this.fail('unterminated string', start);
    // Only up to the closing quote: searching the rest of the text for every string made
    // a .drv of 200,000 input sources take 20 s to parse.
    for (let i = this.pos; i < end; i++) {
      if (this.text.charCodeAt(i) === 92 /* \\ */) this.fail('a backslash escape where Nix writes strings unescaped', i);
    }
    this.pos = end + 1;
    return this.text.slice(start + 1, end);
  }

  /**
   * `[item,item,…]`; stricter than Nix, which also takes stray commas. `max` stops a
   * list as soon as it is longer (`what` names it), so a hostile file is not read to its end.
   */
  list<T>(item: () => T, max = Infinity, what = 'list'): T[] {
    this.expect('[');
    const out: T[] = [];
    if (this.accept(']')) return out;
    for (;;) {
      if (out.length >= max) this.fail(`more than ${max} ${what}, the most accepted`);
      out.push(item());
      if (this.accept(']')) return out;
      this.expect(',');
    }
  }

  /** `("a","b",…)`, one string per reader given. */
  tuple(...items: (() => string)[]): string[] {
    this.expect('(');
    const out: string[] = [];
    for (const [i, item] of items.entries()) {
      if (i > 0) this.expect(',');
      out.push(item());
    }
    this.expect(')');
    return out;
  }

  end(): void {
    if (this.pos !== this.text.length) this.fail('unexpected text after the derivation');
  }
}

const UNESCAPES: Record<string, string> = { '"': '"', '\\': '\\', n: '\n', r: '\r', t: '\t' };
const ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** A string as Nix's printString writes it in a .drv. */
export function quote(s: string): string {
  return '"' + s.replace(/["\\\n\r\t]/g, (c) => ESCAPES[c]!) + '"';
}

export function list(items: readonly string[]): string {
  return '[' + items.join(',') + ']';
}

/** As Nix's printUnquotedString: the caller has made sure there is nothing to escape. */
export function raw(s: string): string {
  return '"' + s + '"';
}

/** The parts of a `Derive(...)` term, in the order they are to be printed. */
export interface DeriveTerm {
  /** name, path, hashAlgo, hash */
  outputs: readonly (readonly [string, string, string, string])[];
  inputDrvs: readonly (readonly [string, readonly string[]])[];
  inputSrcs: readonly string[];
  platform: string;
  builder: string;
  args: readonly string[];
  env: readonly (readonly [string, string])[];
}

/** Prints a derivation term as Nix's Derivation::unparse, escaping exactly where it does. */
export function printDerive(t: DeriveTerm): string {
  return (
    'Derive(' +
    [
      list(t.outputs.map((o) => '(' + o.map(raw).join(',') + ')')),
      list(t.inputDrvs.map(([path, outs]) => `(${raw(path)},${list(outs.map(raw))})`)),
      list(t.inputSrcs.map(raw)),
      raw(t.platform),
      quote(t.builder),
      list(t.args.map(quote)),
      list(t.env.map(([k, v]) => `(${quote(k)},${quote(v)})`)),
    ].join(',') +
    ')'
  );
}
