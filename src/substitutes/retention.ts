// Retention: which builds' outputs garbage collection keeps. A build's outputs are kept
// when any rule holds for it; everything they refer to, and everything unfinished builds
// still need, is kept with them (garbage-queries.ts).
import { parseTag, type Tag } from '../scheduler/tags.js';

export interface RetentionRules {
  /** The outputs of the last N successful builds of each derivation name (e.g. hello-2.12). */
  lastSuccessfulPerName: number;
  /** The outputs of builds that succeeded within this many days. */
  newerThanDays?: number;
  /** The outputs of builds that succeeded at or after this time. */
  newerThan?: Date;
  /** The outputs of builds carrying any of these tags. */
  tags: Tag[];
}

/** What gc keeps when the configuration has no retention section, or leaves a rule out. */
export const DEFAULT_RETENTION: RetentionRules = { lastSuccessfulPerName: 3, tags: [{ key: 'keep', value: 'true' }] };

/** The configuration's form: dates and tags as text. */
export interface RetentionConfig {
  lastSuccessfulPerName?: number;
  newerThanDays?: number;
  /** An ISO 8601 date or date and time, e.g. 2025-01-31 or 2025-01-31T12:00:00Z. */
  newerThan?: string;
  /** KEY=VALUE (default ['keep=true']). */
  tags?: string[];
}

const KEYS: (keyof RetentionConfig)[] = ['lastSuccessfulPerName', 'newerThanDays', 'newerThan', 'tags'];

/** Reads the configuration's retention section; throws naming the setting at fault (`where` is its place, e.g. "kiln.json: retention"). */
export function parseRetention(raw: unknown, where: string): RetentionRules {
  if (raw === undefined) return DEFAULT_RETENTION;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${where}: must be an object`);
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (!(KEYS as string[]).includes(key)) throw new Error(`${where}.${key}: is not a setting (known: ${KEYS.join(', ')})`);
  }
  const rules: RetentionRules = { ...DEFAULT_RETENTION };
  if (r.lastSuccessfulPerName !== undefined) {
    if (!Number.isInteger(r.lastSuccessfulPerName) || (r.lastSuccessfulPerName as number) < 0) {
      throw new Error(`${where}.lastSuccessfulPerName: must be a whole number of at least 0, not ${JSON.stringify(r.lastSuccessfulPerName)}`);
    }
    rules.lastSuccessfulPerName = r.lastSuccessfulPerName as number;
  }
  if (r.newerThanDays !== undefined) {
    if (typeof r.newerThanDays !== 'number' || !(r.newerThanDays >= 0)) {
      throw new Error(`${where}.newerThanDays: must be a number of days of at least 0, not ${JSON.stringify(r.newerThanDays)}`);
    }
    rules.newerThanDays = r.newerThanDays;
  }
  if (r.newerThan !== undefined) {
    const date = typeof r.newerThan === 'string' && /^\d{4}-\d{2}-\d{2}(T.*)?$/.test(r.newerThan) ? new Date(r.newerThan) : undefined;
    if (!date || Number.isNaN(date.getTime())) {
      throw new Error(`${where}.newerThan: must be an ISO 8601 date (2025-01-31) or date and time (2025-01-31T12:00:00Z), not ${JSON.stringify(r.newerThan)}`);
    }
    rules.newerThan = date;
  }
  if (r.tags !== undefined) {
    if (!Array.isArray(r.tags)) throw new Error(`${where}.tags: must be a list of KEY=VALUE`);
    rules.tags = r.tags.map((t: unknown, i) => {
      try {
        if (typeof t !== 'string') throw new Error(`${JSON.stringify(t)} is not a KEY=VALUE string`);
        return parseTag(t);
      } catch (err) {
        throw new Error(`${where}.tags[${i}]: ${(err as Error).message}`, { cause: err });
      }
    });
  }
  return rules;
}

/** The time from which a succeeded build is kept by the date rules (the earlier of the two: either keeps), if any. */
export function keptSince(rules: RetentionRules, now: Date): Date | undefined {
  const candidates = [
    rules.newerThan?.getTime(),
    rules.newerThanDays !== undefined ? now.getTime() - rules.newerThanDays * 86_400_000 : undefined,
  ].filter((t): t is number => t !== undefined);
  return candidates.length > 0 ? new Date(Math.min(...candidates)) : undefined;
}
