// Submission by path: the .drv files of a derivation's closure that kiln does not hold,
// fetched from the upstreams used for derivations (Guix substitute servers serve them),
// each narinfo judged with that upstream's keys and each NAR checked against its NarHash
// before its text is handed to the submission's checks.
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Hash } from '../../store/hash.js';
import { parseDerivation } from '../../store/derivation.js';
import { canDecompress, decompressNar } from '../../store/nar-decompress.js';
import { parseNar } from '../../store/nar-parser.js';
import type { NarInfo } from '../../store/narinfo.js';
import { lookUp } from './upstream-client.js';
import type { Upstream } from './upstream-list.js';

/** A .drv file is small; a bigger one is not taken. */
const MAX_DRV_BYTES = 16 << 20;
const MAX_CLOSURE = 100_000;

export class DerivationFetchError extends Error {
  override name = 'DerivationFetchError';
}

/**
 * The texts of `root` and of its input derivations, recursively, that `isKnown` says kiln
 * lacks, from the first upstream (used for derivations) that has each. Throws a
 * DerivationFetchError naming the path and what each upstream said when none has it.
 */
export async function fetchDerivationClosure(
  upstreams: readonly Upstream[],
  root: string,
  isKnown: (paths: string[]) => Promise<Set<string>>,
  signal?: AbortSignal,
): Promise<{ path: string; text: Uint8Array }[]> {
  const sources = upstreams.filter((u) => u.forDerivations);
  const fetched = new Map<string, Uint8Array>();
  let frontier = [root];
  while (frontier.length > 0) {
    const known = await isKnown(frontier);
    const wanted = frontier.filter((p) => !known.has(p) && !fetched.has(p));
    const texts = await Promise.all(wanted.map((p) => fetchOne(sources, p, signal)));
    const next = new Set<string>();
    wanted.forEach((path, i) => {
      fetched.set(path, texts[i]!);
      let inputs: Iterable<string>;
      try {
        inputs = parseDerivation(Buffer.from(texts[i]!).toString('utf8')).inputDrvs.keys();
      } catch (err) {
        throw new DerivationFetchError(`${path} as an upstream serves it is not a derivation: ${(err as Error).message}`, { cause: err });
      }
      for (const input of inputs) if (!fetched.has(input)) next.add(input);
    });
    if (fetched.size > MAX_CLOSURE) throw new DerivationFetchError(`the closure of ${root} has more than ${MAX_CLOSURE} derivations`);
    frontier = [...next];
  }
  return [...fetched].map(([path, text]) => ({ path, text }));
}

async function fetchOne(sources: readonly Upstream[], path: string, signal?: AbortSignal): Promise<Uint8Array> {
  if (sources.length === 0) throw new DerivationFetchError(`derivation ${path} was not sent with the submission (is it in the submitting machine's store?), is not known to the coordinator, and no upstream is configured for derivations`);
  const said: string[] = [];
  for (const upstream of sources) {
    const answer = await lookUp(upstream, path, signal);
    if (answer.outcome !== 'hit') {
      said.push(`${upstream.url}: ${answer.reason}`);
      continue;
    }
    try {
      return await narFileContents(upstream, answer.info, signal);
    } catch (err) {
      said.push(`${upstream.url}: ${(err as Error).message}`);
    }
  }
  throw new DerivationFetchError(`derivation ${path} is neither known to the coordinator nor to be had from an upstream (${said.join('; ')})`);
}

/** The one regular file a .drv's NAR holds, its NarHash and NarSize checked. */
async function narFileContents(upstream: Upstream, info: NarInfo, signal?: AbortSignal): Promise<Uint8Array> {
  const file = info.files.find((f) => canDecompress(f.compression));
  if (!file) throw new Error(`its NAR is offered only as ${info.files.map((f) => f.compression ?? 'bzip2').join(', ')}`);
  if (info.narSize > MAX_DRV_BYTES + 1024) throw new Error(`its NAR is ${info.narSize} bytes, more than a derivation takes`);
  const res = await fetch(new URL(file.url, `${upstream.url}/`), { signal: signal ?? AbortSignal.timeout(60_000) });
  if (res.status !== 200 || !res.body) {
    await res.body?.cancel();
    throw new Error(`${file.url}: HTTP ${res.status}`);
  }
  const controller = new AbortController();
  const nar = parseNar(decompressNar(file.compression, Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), signal ?? controller.signal));
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const event of nar) {
    if (event.type === 'directory' || event.type === 'symlink') throw new Error('its NAR is not a single file');
    if (event.type === 'contents') {
      size += event.chunk.length;
      if (size > MAX_DRV_BYTES) throw new Error('its NAR holds more than a derivation takes');
      chunks.push(Buffer.from(event.chunk));
    }
  }
  const { sha256, size: narSize } = await nar.result;
  if (narSize !== info.narSize || !new Hash('sha256', sha256).equals(Hash.parse(info.narHash))) {
    throw new Error(`its NAR is not the one the narinfo declares (${narSize} bytes, not ${info.narSize}, or another hash)`);
  }
  return Buffer.concat(chunks);
}
