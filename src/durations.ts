// Lengths of time as people write them in flags and the configuration file: a whole
// number and a unit (30s, 30m, 12h, 7d, 2w).
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** Milliseconds, or undefined when `text` is not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)([smhdw])$/.exec(text.trim());
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : undefined;
}

export const DURATION_EXAMPLES = '30s, 30m, 12h, 7d or 2w';
