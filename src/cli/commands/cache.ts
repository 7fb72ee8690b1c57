// `kiln cache …`: the binary cache's upkeep, and mirrors of it.
import { coordinatorUrl } from '../../config.js';
import { adminClientFor } from '../admin-client.js';
import { exportCache } from '../cache-export.js';
import { CLIENT_OPTIONS, parse } from '../options.js';
import { printJson } from '../output.js';
import { UsageError } from '../usage-error.js';

export async function cacheCommand(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'gc': {
      const { values, positionals } = parse(rest, { ...CLIENT_OPTIONS, 'dry-run': { type: 'boolean', default: false } });
      if (positionals.length) throw new UsageError(`kiln cache gc takes no arguments, got ${positionals.join(' ')}`);
      const client = adminClientFor(values);
      const dryRun = values['dry-run'];
      const r = await client.collectGarbage({ dryRun });
      if (values.json) {
        printJson({ dryRun, paths: r.paths, files: Number(r.files), orphanFiles: Number(r.orphanFiles), bytes: Number(r.bytes) });
        return;
      }
      for (const path of r.paths) console.log(`${dryRun ? 'would remove' : 'removed'} ${path}`);
      const orphans = r.orphanFiles > 0n ? ` (${r.orphanFiles} of them named by no path)` : '';
      console.log(`${dryRun ? 'would remove' : 'removed'} ${r.paths.length} store path(s) and ${r.files} NAR file(s)${orphans}, ${sizeText(Number(r.bytes))}${dryRun ? ' (dry run: nothing was removed)' : ' freed'}`);
      return;
    }
    case 'export': {
      const { values, positionals } = parse(rest, CLIENT_OPTIONS);
      if (positionals.length !== 1) throw new UsageError(`kiln cache export takes one directory, got ${positionals.length ? positionals.join(' ') : 'none'}`);
      const dir = positionals[0]!;
      const warn = (message: string) => console.error(`kiln: ${message}`);
      const s = await exportCache({ client: adminClientFor(values), cacheUrl: coordinatorUrl(values.coordinator), dir, warn });
      if (values.json) {
        printJson({ dir, ...s });
        return;
      }
      console.log(`exported to ${dir}: ${s.written} path(s) written, ${s.removed} removed, ${s.unchanged} unchanged; ${s.narsWritten} NAR file(s) written, ${s.narsRemoved} removed; ${sizeText(s.bytes)} written`);
      return;
    }
    case 'public-key': {
      const { values, positionals } = parse(rest, { ...CLIENT_OPTIONS, guix: { type: 'boolean', default: false } });
      if (positionals.length) throw new UsageError(`kiln cache public-key takes no arguments, got ${positionals.join(' ')}`);
      // Public, like the cache itself: no admin token needed.
      const url = new URL(values.guix ? '/signing-key.pub' : '/nix-public-key', coordinatorUrl(values.coordinator));
      const res = await fetch(url).catch((err: unknown) => {
        throw new Error(`cannot reach the coordinator at ${url.origin}: ${(err as Error).message}`, { cause: err });
      });
      if (!res.ok) throw new Error(`the coordinator at ${url.origin} answered ${res.status} for ${url.pathname}`);
      const key = await res.text();
      if (values.json) printJson({ kind: values.guix ? 'guix' : 'nix', publicKey: key.trim() });
      else process.stdout.write(key);
      return;
    }
    default:
      throw new UsageError(`unknown cache command ${JSON.stringify(sub ?? '')}: use gc, export or public-key`);
  }
}

function sizeText(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = bytes;
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return u === 0 ? `${bytes} bytes` : `${n.toFixed(1)} ${units[u]}`;
}
