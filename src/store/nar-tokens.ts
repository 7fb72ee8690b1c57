// The NAR's fixed token sequences, framed once: written as they are by nar-writer.ts,
// and counted by their length in nar-size.ts.
import { NAR_MAGIC, padding } from './nar-format.js';

function frame(...tokens: string[]): Buffer {
  return Buffer.concat(
    tokens.map((t) => {
      const bytes = Buffer.from(t);
      const out = Buffer.alloc(8 + bytes.length + padding(bytes.length));
      out.writeUInt32LE(bytes.length, 0);
      bytes.copy(out, 8);
      return out;
    }),
  );
}

export const MAGIC = frame(NAR_MAGIC);
export const REGULAR = frame('(', 'type', 'regular');
export const EXECUTABLE = frame('executable', '');
export const CONTENTS = frame('contents');
export const SYMLINK = frame('(', 'type', 'symlink', 'target');
export const DIRECTORY = frame('(', 'type', 'directory');
export const ENTRY = frame('entry', '(', 'name');
export const NODE = frame('node');
export const CLOSE = frame(')');
