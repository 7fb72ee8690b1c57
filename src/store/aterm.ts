// The small piece of ATerm that .drv files use: a reader over the text that knows
// quoted strings with Nix's escapes, lists and tuples, and reports errors with the
// byte offset where the text stopped making sense.

export class DerivationError extends Error {
  override name = 'DerivationError';
  constructor(
    message: string,
    readonly offset?: number,
  ) {
    super(offset === undefined ? message : `${message} (at offset ${offset})`);
  }
}

export class ATermReader {
  pos = 0;
  constructor(private readonly text: string) {}

  expect(literal: string): void {
    if (!this.text.startsWith(literal, this.pos)) {
      const found = this.text.slice(this.pos, this.pos + Math.max(literal.length, 8));
      throw new DerivationError(`expected ${JSON.stringify(literal)}, found ${found ? JSON.stringify(found) : 'the end of the text'}`, this.pos);
    }
    this.pos += literal.length;
  }

  /** Consumes `literal` if it is next. */
  accept(literal: string): boolean {
    if (!this.text.startsWith(literal, this.pos)) return false;
    this.pos += literal.length;
    return true;
  }

  string(): string {
    this.expect('"');
    let out = '';
    let start = this.pos;
    for (;;) {
      const i = this.nextSpecial();
      if (i < 0) throw new DerivationError('unterminated string', start - 1);
      out += this.text.slice(this.pos, i);
      if (this.text[i] === '"') {
        this.pos = i + 1;
        return out;
      }
      // A backslash: n, r and t are control characters; anything else stands for itself.
      const c = this.text[i + 1];
      if (c === undefined) throw new DerivationError('unterminated string', start - 1);
      out += c === 'n' ? '\n' : c === 'r' ? '\r' : c === 't' ? '\t' : c;
      this.pos = i + 2;
      start = this.pos;
    }
  }

  private nextSpecial(): number {
    for (let i = this.pos; i < this.text.length; i++) {
      const c = this.text.charCodeAt(i);
      if (c === 34 /* " */ || c === 92 /* \ */) return i;
    }
    return -1;
  }

  /** `[item,item,…]` */
  list<T>(item: () => T): T[] {
    this.expect('[');
    const out: T[] = [];
    if (this.accept(']')) return out;
    for (;;) {
      out.push(item());
      if (this.accept(']')) return out;
      this.expect(',');
    }
  }

  end(): void {
    if (this.pos !== this.text.length) throw new DerivationError(`unexpected text after the derivation`, this.pos);
  }
}

const ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** A string as Nix writes it in a .drv. */
export function quote(s: string): string {
  return '"' + s.replace(/["\\\n\r\t]/g, (c) => ESCAPES[c]!) + '"';
}
