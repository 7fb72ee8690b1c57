// Asking an upstream binary cache about store paths over HTTP: a narinfo, judged with the
// keys trusted for that upstream. Every answer the upstream can give (404, 5xx, garbage,
// a bad signature, no answer at all) becomes an outcome with a reason, never a throw.
import { judgeNarInfo } from '../../store/narinfo-trust.js';
import type { NarInfo } from '../../store/narinfo.js';
import { parseStorePath } from '../../store/store-path.js';
import type { Upstream } from './upstream-list.js';

export type LookupOutcome =
  | { outcome: 'hit'; info: NarInfo }
  /** The upstream does not have it, or has nothing kiln may believe. */
  | { outcome: 'miss'; reason: string }
  /** The upstream could not tell (down, 5xx, timed out): ask again later. */
  | { outcome: 'error'; reason: string };

/** A narinfo is a few hundred bytes; a bigger answer is not one. */
const MAX_NARINFO_BYTES = 1 << 20;
const DEFAULT_TIMEOUT_MS = 10_000;

/** Looks `storePath` up on `upstream` (Node's fetch keeps connections alive between calls). */
export async function lookUp(upstream: Upstream, storePath: string, signal?: AbortSignal, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<LookupOutcome> {
  const text = await fetchNarInfoText(upstream.url, storePath, signal, timeoutMs);
  if (text.kind !== 'text') return text.kind === 'absent' ? { outcome: 'miss', reason: 'no narinfo (404)' } : { outcome: 'error', reason: text.reason };
  const judged = judgeNarInfo(text.text, storePath, upstream.keys);
  return judged.trusted ? { outcome: 'hit', info: judged.info } : { outcome: 'miss', reason: `${text.url}: ${judged.reason}` };
}

/** A narinfo as a cache answered: its text (empty when too big to be one), none, or no answer. */
export type NarInfoFetch = { kind: 'text'; text: string; url: string } | { kind: 'absent' } | { kind: 'error'; reason: string };

/** Fetches the narinfo of `storePath` from the cache at `baseUrl` (no trailing slash), judged by no one. */
export async function fetchNarInfoText(baseUrl: string, storePath: string, signal?: AbortSignal, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<NarInfoFetch> {
  const url = `${baseUrl}/${parseStorePath(storePath).hashPart}.narinfo`;
  const fetched = await fetchText(url, signal, timeoutMs);
  return fetched.kind === 'text' ? { ...fetched, url } : fetched;
}

type Fetched = { kind: 'text'; text: string } | { kind: 'absent' } | { kind: 'error'; reason: string };

async function fetchText(url: string, signal: AbortSignal | undefined, timeoutMs: number): Promise<Fetched> {
  const timeout = AbortSignal.timeout(timeoutMs);
  let res: Response;
  try {
    res = await fetch(url, { signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return { kind: 'error', reason: `${url}: ${timeout.aborted ? `no answer in ${timeoutMs} ms` : (cause?.code ?? cause?.message ?? (err as Error).message)}` };
  }
  if (res.status === 404 || res.status === 410) {
    await res.body?.cancel();
    return { kind: 'absent' };
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    return { kind: 'error', reason: `${url}: HTTP ${res.status}` };
  }
  const declared = Number(res.headers.get('content-length') ?? 0);
  if (declared > MAX_NARINFO_BYTES) {
    await res.body?.cancel();
    return { kind: 'text', text: '' };
  }
  try {
    const body = await res.text();
    return { kind: 'text', text: body.length > MAX_NARINFO_BYTES ? '' : body };
  } catch (err) {
    return { kind: 'error', reason: `${url}: the answer broke off: ${(err as Error).message}` };
  }
}
