// Sizes in bytes as people write and read them: settings such as `--max-output-size 2G`
// (plain bytes, or a number with a binary suffix), and sizes in messages ("3.1 GiB").
// Shared by the coordinator, the agent and the CLI, so a limit reads the same everywhere.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Bytes for people: 0 B, 512 KiB, 3.2 MiB, 2 GiB (one decimal, none when it is 0). */
export function formatBytes(n: number): string {
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1).replace(/\.0$/, '')} ${UNITS[unit]}`;
}

/** Powers of 1024 by suffix letter; K, M, G, T as Nix's and Hydra's settings read them. */
const SUFFIX_POWER: Record<string, number> = { '': 0, K: 1, M: 2, G: 3, T: 4 };
const SIZE = /^(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?|B)?$/i;

/**
 * Parses a size: plain bytes (`1048576`) or a number with a binary suffix (`512K`, `64M`,
 * `2G`, `1.5T`; `MiB`, `MB` and `m` mean the same). Throws a RangeError naming `what`
 * (e.g. "--max-output-size") when the text is not one.
 */
export function parseByteSize(text: string, what: string): number {
  const m = SIZE.exec(text.trim());
  if (!m) throw new RangeError(`${what} must be a size in bytes, e.g. 1048576, 512M or 2G; not ${JSON.stringify(text)}`);
  const bytes = Math.round(Number(m[1]) * 1024 ** SUFFIX_POWER[(m[2] ?? '').toUpperCase()]!);
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`${what} ${JSON.stringify(text)} is too large`);
  return bytes;
}
