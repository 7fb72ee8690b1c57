// Raw SQL results differ by driver: postgres.js returns the rows array itself, PGlite
// returns `{ rows }`. Code that runs raw statements reads rows through this.
export function rowsOf<T>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[];
  return ((result as { rows?: T[] }).rows ?? []) as T[];
}

/** A timestamp from a raw statement (or min()): a string from one driver, a Date from the other. */
export function dateOf(value: Date | string | null): Date {
  return value instanceof Date ? value : new Date(value ?? 0);
}
