// What a Nix client would check of a served output: its narinfo, and its NAR (as LZ4, the
// compression agents upload in), which must decompress to the narinfo's NarHash and size.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { encodeBase32 } from '../../src/store/base32.js';
import { decompressLz4Frames } from '../../src/store/lz4-frames.js';
import { parseNarInfo } from '../../src/store/narinfo.js';
import { parseStorePath } from '../../src/store/store-path.js';

/** Throws, naming the path, unless `storePath`'s served NAR decompresses to its narinfo's NarHash. */
export async function checkServedNar(cacheUrl: string, storePath: string): Promise<{ narHash: string; narSize: number }> {
  const base = cacheUrl.endsWith('/') ? cacheUrl : `${cacheUrl}/`;
  const res = await fetch(new URL(`${parseStorePath(storePath).hashPart}.narinfo`, base));
  if (res.status !== 200) throw new Error(`${storePath}: narinfo HTTP ${res.status}`);
  const info = parseNarInfo(await res.text());
  const file = info.files.find((f) => f.compression === 'lz4');
  if (!file) throw new Error(`${storePath}: no lz4 NAR among ${info.files.map((f) => f.compression).join(', ')}`);
  const nar = await fetch(new URL(file.url, base));
  if (nar.status !== 200 || !nar.body) throw new Error(`${storePath}: ${file.url} HTTP ${nar.status}`);
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of decompressLz4Frames(Readable.fromWeb(nar.body as WebReadableStream<Uint8Array>) as AsyncIterable<Buffer>)) {
    hash.update(chunk);
    size += chunk.length;
  }
  const narHash = `sha256:${encodeBase32(hash.digest())}`;
  if (narHash !== info.narHash || size !== info.narSize) {
    throw new Error(`${storePath}: the NAR decompresses to ${size} bytes ${narHash}, the narinfo says ${info.narSize} bytes ${info.narHash}`);
  }
  return { narHash, narSize: size };
}
