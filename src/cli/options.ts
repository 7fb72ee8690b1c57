// Option parsing shared by the subcommands, on node:util's parseArgs.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseTag, type Tag } from '../scheduler/tags.js';
import { UsageError } from './usage-error.js';

export const CLIENT_OPTIONS = {
  coordinator: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const satisfies ParseArgsConfig['options'];

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
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
