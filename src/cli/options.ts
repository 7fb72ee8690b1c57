// Option parsing shared by the subcommands, on node:util's parseArgs.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { MAX_PRIORITY, MIN_PRIORITY } from '../protocol/priority.js';
import { parseTag, type Tag } from '../scheduler/tags.js';
import { UsageError } from './usage-error.js';

export const CLIENT_OPTIONS = {
  coordinator: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const satisfies ParseArgsConfig['options'];

const NEGATIVE_NUMBER = /^-\d+$/;
/** Stands in for a negative number given as an argument; no argument starts with NUL. */
const HELD = '\0';

/**
 * parseArgs with negative numbers as people write them: parseArgs takes `-5` for a
 * short option, so `--priority -5` becomes `--priority=-5`, and a `-7` among the
 * arguments is held aside and put back in its place.
 */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  const given: string[] = [];
  const held: string[] = [];
  for (const arg of args) {
    const previous = given[given.length - 1];
    const name = previous?.startsWith('--') && !previous.includes('=') ? previous.slice(2) : undefined;
    if (NEGATIVE_NUMBER.test(arg) && name !== undefined && options[name]?.type === 'string') {
      given[given.length - 1] = `${previous}=${arg}`;
    } else if (NEGATIVE_NUMBER.test(arg)) {
      given.push(`${HELD}${held.push(arg) - 1}`);
    } else {
      given.push(arg);
    }
  }
  try {
    const parsed = parseArgs({ args: given, options, allowPositionals: true, strict: true });
    const positionals = parsed.positionals.map((p) => (p.startsWith(HELD) ? held[Number(p.slice(1))]! : p));
    return { values: parsed.values, positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function tagsFrom(values: string[] | undefined): Tag[] {
  try {
    return (values ?? []).map(parseTag);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function intFrom(text: string | undefined, what: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^-?\d+$/.test(text)) throw new UsageError(`${what} must be a whole number, not ${JSON.stringify(text)}`);
  return Number(text);
}

/** A build priority, checked against the range the coordinator accepts. */
export function priorityFrom(text: string | undefined, what: string): number | undefined {
  const n = intFrom(text, what);
  if (n !== undefined && (n < MIN_PRIORITY || n > MAX_PRIORITY)) {
    throw new UsageError(`${what} must be from ${MIN_PRIORITY} to ${MAX_PRIORITY}, not ${text}`);
  }
  return n;
}

export function exactlyOne(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`expected one ${what}, got ${positionals.length}`);
  return positionals[0]!;
}

/** A duration in whole seconds, not negative (0 where not given). */
export function secondsFrom(text: string | undefined, what: string): number {
  const n = intFrom(text, what) ?? 0;
  if (n < 0) throw new UsageError(`${what} must not be negative`);
  return n;
}

/**
 * Lets a string option be given bare as well: `--NAME` alone becomes `--NAME=VALUE`
 * (parseArgs takes an option either with a value always or never).
 */
export function bareOption(args: string[], name: string, value: string): string[] {
  const end = args.indexOf('--');
  return args.map((arg, i) => (arg === `--${name}` && (end < 0 || i < end) ? `--${name}=${value}` : arg));
}

export type ExistingOutputsChoice = 'none' | 'kiln' | 'upstream';

/** `--ignore-if-output-exists[=kiln|upstream]`: which existing outputs make a build needless. */
export function existingOutputsFrom(text: string | undefined): ExistingOutputsChoice {
  if (text === undefined) return 'none';
  if (text === 'kiln' || text === 'upstream') return text;
  throw new UsageError(`--ignore-if-output-exists takes kiln (the default) or upstream, not ${JSON.stringify(text)}`);
}
