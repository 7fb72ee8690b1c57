// After the builder exits: every output must exist; each is made read-only, serialised to
// NAR once to hash it and scan it for references (to the input closure and to the
// derivation's own outputs, as Nix scans), a fixed output's content hash is checked, and
// the outputs are registered as valid, all or none.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { encodeBase32 } from '../../../store/base32.js';
import type { Derivation } from '../../../store/derivation.js';
import { Hash } from '../../../store/hash.js';
import { dumpPath } from '../../../store/nar-writer.js';
import { fixedOutput } from '../../../store/output-paths.js';
import { ReferenceScanner } from '../../../store/references.js';
import type { BuildJob, BuiltOutput } from '../builder.js';
import type { LocalStore, PathInfo } from './local-store.js';
import { makeReadOnly } from './store-tree.js';

export type CollectedOutputs = { kind: 'success'; outputs: BuiltOutput[] } | { kind: 'failure'; message: string };

export async function collectOutputs(
  job: BuildJob,
  drv: Derivation,
  store: LocalStore,
  inputPaths: ReadonlySet<string>,
  signal: AbortSignal,
): Promise<CollectedOutputs> {
  const fixed = fixedOutput(drv);
  const candidates = [...inputPaths, ...job.outputs.map((o) => o.path)];

  const infos: PathInfo[] = [];
  for (const output of job.outputs) {
    const diskPath = store.diskPath(output.path);
    const st = await lstat(diskPath).catch(() => undefined);
    if (!st) return { kind: 'failure', message: `builder for '${job.derivationPath}' failed to produce output path for output '${output.name}' at '${output.path}'` };
    await makeReadOnly(diskPath);

    // One pass over the NAR: its SHA-256 and size, the references, a recursive fixed hash.
    const scanner = new ReferenceScanner(candidates);
    const recursiveHash = fixed?.recursive ? createHash(fixed.hash.algorithm) : undefined;
    const nar = dumpPath(diskPath, { signal });
    for await (const chunk of nar) {
      scanner.feed(chunk);
      recursiveHash?.update(chunk);
    }
    const { sha256, size } = await nar.result;
    const references = scanner.found();

    if (fixed) {
      if (!fixed.recursive && !st.isFile()) return { kind: 'failure', message: `output '${output.path}' of a flat fixed-output derivation is not a regular file` };
      const got = new Hash(fixed.hash.algorithm, recursiveHash ? recursiveHash.digest() : await hashFile(diskPath, fixed.hash.algorithm));
      if (!got.equals(fixed.hash)) {
        return { kind: 'failure', message: `hash mismatch in fixed-output derivation '${job.derivationPath}':\n  specified: ${fixed.hash.sri}\n     got:    ${got.sri}` };
      }
      if (references.length > 0) {
        return { kind: 'failure', message: `illegal path references in fixed-output derivation '${job.derivationPath}': ${references.join(' ')}` };
      }
    }
    infos.push({ path: output.path, narHash: `sha256:${encodeBase32(sha256)}`, narSize: size, references, deriver: job.derivationPath });
  }

  const cycle = outputCycle(infos);
  if (cycle) {
    const [to, from] = cycle.map((path) => job.outputs.find((o) => o.path === path)!.name);
    return { kind: 'failure', message: `cycle detected in build of '${job.derivationPath}' in the references of output '${to}' from output '${from}'` };
  }
  for (const info of infos) await store.exclusive(info.path, () => store.register(info));
  return {
    kind: 'success',
    outputs: job.outputs.map((o, i) => ({ name: o.name, storePath: o.path, diskPath: store.diskPath(o.path), references: infos[i]!.references })),
  };
}

/**
 * Two outputs that refer to each other, directly or through others (a self-reference is
 * fine): Nix refuses them, as no order of registering them would keep closures whole.
 * Gives [referred-to output, referring output].
 */
export function outputCycle(outputs: readonly { path: string; references: readonly string[] }[]): [string, string] | undefined {
  const paths = new Set(outputs.map((o) => o.path));
  const edges = new Map(outputs.map((o) => [o.path, o.references.filter((r) => r !== o.path && paths.has(r))]));
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (path: string): [string, string] | undefined => {
    state.set(path, 'visiting');
    for (const next of edges.get(path)!) {
      if (state.get(next) === 'visiting') return [next, path];
      if (!state.has(next)) {
        const found = visit(next);
        if (found) return found;
      }
    }
    state.set(path, 'done');
    return undefined;
  };
  for (const path of paths) {
    if (!state.has(path)) {
      const found = visit(path);
      if (found) return found;
    }
  }
  return undefined;
}

async function hashFile(path: string, algorithm: string): Promise<Buffer> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest();
}
