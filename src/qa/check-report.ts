// A build's reproducibility check as people read it: the scheduler's results, and for
// each output whose NAR hashes differ, the files that differ, from the stored NARs.
import type { Database } from '../db/connection.js';
import { getReproducibility, type CheckedOutput, type Reproducibility } from '../scheduler/reproducibility.js';
import type { NarStorage } from '../storage/nar-storage.js';
import { decompressNar } from '../store/nar-decompress.js';
import { differences, listNar, type DifferingFile } from './nar-differences.js';

/** NARs larger than this are not listed for a comparison (the hashes still say they differ). */
export const MAX_COMPARED_NAR = 256 << 20;

export interface ReportedOutput extends CheckedOutput {
  reproducible: boolean;
  differences: DifferingFile[];
  differencesError: string;
}

export interface CheckReport extends Omit<Reproducibility, 'outputs'> {
  outputs: ReportedOutput[];
}

/** Where a result's NAR is served, uncompressed (check-routes.ts). */
export function checkNarUrl(buildId: string, position: number, output: string): string {
  return `/qa/${buildId}/${position}/${output}.nar`;
}

/** The NAR of a stored result, uncompressed. */
export function readResultNar(storage: NarStorage, result: { fileName: string; compression: string }, signal: AbortSignal): AsyncGenerator<Buffer> {
  return decompressNar(result.compression, storage.read(result.fileName), signal);
}

/** The build's check with what differs, or undefined when it has none. */
export async function checkReport(db: Database, storage: NarStorage, buildId: string, signal: AbortSignal): Promise<CheckReport | undefined> {
  const check = await getReproducibility(db, buildId);
  if (!check) return undefined;
  const outputs: ReportedOutput[] = [];
  for (const output of check.outputs) {
    const reproducible = new Set(output.results.map((r) => r.narHash)).size <= 1;
    const reported: ReportedOutput = { ...output, reproducible, differences: [], differencesError: '' };
    outputs.push(reported);
    if (reproducible) continue;
    const tooLarge = output.results.find((r) => r.narSize > MAX_COMPARED_NAR);
    if (tooLarge) {
      reported.differencesError = `the NAR at position ${tooLarge.position} has ${tooLarge.narSize} bytes; files are compared only up to ${MAX_COMPARED_NAR}`;
      continue;
    }
    try {
      const listings = [];
      for (const r of output.results) listings.push({ position: r.position, entries: await listNar(readResultNar(storage, r, signal)) });
      reported.differences = differences(listings);
    } catch (err) {
      reported.differencesError = `the stored NARs could not be compared: ${(err as Error).message}`;
    }
  }
  return { ...check, outputs };
}
