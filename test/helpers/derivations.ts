// Real derivations for tests, made by nix-instantiate, with their closures read back
// from the store as a submission carries them.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDerivation } from '../../src/store/derivation.js';
import { instantiate, nix } from './nix.js';

export const SYSTEM = 'x86_64-linux';

/** A Nix expression for a derivation whose builder is /bin/sh -c script (with the host's tools on PATH). */
export function shDrv(name: string, script: string, extra = ''): string {
  return `derivation { name = "${name}"; system = "${SYSTEM}"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = [ "-c" ${JSON.stringify(script)} ]; ${extra} }`;
}

/** The .drv texts of a derivation's closure, root first. */
export function closureOf(drvPath: string): { path: string; text: Uint8Array }[] {
  const out: { path: string; text: Uint8Array }[] = [];
  const seen = new Set<string>();
  const visit = (p: string) => {
    if (seen.has(p)) return;
    seen.add(p);
    const text = readFileSync(p);
    out.push({ path: p, text });
    for (const input of parseDerivation(text.toString('utf8')).inputDrvs.keys()) visit(input);
  };
  visit(drvPath);
  return out;
}

/** A fresh derivation (unique by a nonce) with a chain of inputs: top ← mid ← leaf. */
export function chain(nonce: string): { top: string; mid: string; leaf: string } {
  const [top] = instantiate(`let
    leaf = ${shDrv(`leaf-${nonce}`, 'echo leaf > $out')};
    mid = ${shDrv(`mid-${nonce}`, 'cat ${leaf} > $out')};
  in ${shDrv(`top-${nonce}`, 'cat ${mid} > $out')}`);
  const closure = closureOf(top!);
  const find = (n: string) => closure.find((c) => c.path.endsWith(`-${n}-${nonce}.drv`))!.path;
  return { top: top!, mid: find('mid'), leaf: find('leaf') };
}

/**
 * A fresh derivation with input sources: its builder runs a script (a source) through a
 * wrapper made by builtins.toFile (a source that refers to the script, so not named by
 * the derivation itself), and reads a data file named directly. Writes the files under
 * `dir`; the output is "sourced-<nonce>\nscripted\n".
 */
export function sourcedDrv(nonce: string, dir: string): { drv: string; wrapper: string; script: string; data: string } {
  writeFileSync(join(dir, 'build.sh'), `# ${nonce}\ncat "$data" > "$out"\necho scripted >> "$out"\n`);
  writeFileSync(join(dir, 'data.txt'), `sourced-${nonce}\n`);
  const wrapperText = `exec /bin/sh \${${join(dir, 'build.sh')}}`;
  const [drv] = instantiate(`derivation {
    name = "sourced-${nonce}"; system = "${SYSTEM}"; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
    data = ${join(dir, 'data.txt')};
    args = [ (builtins.toFile "wrapper-${nonce}.sh" "${wrapperText}") ];
  }`);
  const inputSrcs = parseDerivation(readFileSync(drv!, 'utf8')).inputSrcs;
  const wrapper = inputSrcs.find((p) => p.endsWith(`-wrapper-${nonce}.sh`))!;
  const data = inputSrcs.find((p) => p.endsWith('-data.txt'))!;
  const [script] = nix('nix-store', ['--query', '--references', wrapper]).toString().trim().split('\n');
  return { drv: drv!, wrapper, script: script!, data };
}
