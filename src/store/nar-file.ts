// The NAR of a single regular file held in memory, such as a .drv file's text: small
// enough to build at once, unlike directory trees (nar-writer streams those).
import { NAR_MAGIC, padding } from './nar-format.js';

function str(bytes: Uint8Array): Buffer[] {
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(bytes.length));
  return [length, Buffer.from(bytes), Buffer.alloc(padding(bytes.length))];
}

const token = (t: string) => str(Buffer.from(t));

export function narOfFile(contents: Uint8Array, executable = false): Buffer {
  return Buffer.concat([
    ...token(NAR_MAGIC),
    ...token('('),
    ...token('type'),
    ...token('regular'),
    ...(executable ? [...token('executable'), ...token('')] : []),
    ...token('contents'),
    ...str(contents),
    ...token(')'),
  ]);
}
