// key=value tags on builds and agents: parsing, validation, and the matching rule.
import { invalidArgument } from '../errors.js';
import { DEFAULT_INPUT_LIMITS } from '../protocol/limits.js';

export interface Tag {
  key: string;
  value: string;
}

const KEY = /^[A-Za-z0-9_.\-/:]{1,128}$/;
const MAX_VALUE = 1024;
/** A UTF-16 surrogate without its other half: no UTF-8 text (nor PostgreSQL) can hold it. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function validateTag(tag: Tag, where: string): Tag {
  if (!KEY.test(tag.key)) {
    throw invalidArgument(`${where}: tag key ${JSON.stringify(tag.key)} must be 1-128 characters of letters, digits and _ . - / :`);
  }
  if (tag.value.length > MAX_VALUE || tag.value.includes('\0')) {
    throw invalidArgument(`${where}: the value of tag ${tag.key} must be at most ${MAX_VALUE} characters without NUL`);
  }
  if (LONE_SURROGATE.test(tag.value)) throw invalidArgument(`${where}: the value of tag ${tag.key} is not valid Unicode (a lone surrogate)`);
  return tag;
}

/**
 * Validates a list of tags; a key given twice is an error (which value would win?). The
 * count is checked first, so that a list of 100,000 is refused without reading it.
 */
export function validateTags(tags: Tag[], where: string, max = DEFAULT_INPUT_LIMITS.tagsPerBuild, limitName = 'tagsPerBuild'): Tag[] {
  if (tags.length > max) throw invalidArgument(`${where}: ${tags.length} tags; at most ${max} are accepted (limits.${limitName})`);
  const seen = new Set<string>();
  for (const tag of tags) {
    validateTag(tag, where);
    if (seen.has(tag.key)) throw invalidArgument(`${where}: tag key ${tag.key} is given more than once`);
    seen.add(tag.key);
  }
  return tags;
}

/** Parses `key=value` as typed on a command line. */
export function parseTag(text: string): Tag {
  const eq = text.indexOf('=');
  if (eq <= 0) throw invalidArgument(`tag ${JSON.stringify(text)} is not of the form key=value`);
  return validateTag({ key: text.slice(0, eq), value: text.slice(eq + 1) }, 'tag');
}

/** A build may go to an agent only when the agent carries every one of the build's tags. */
export function tagsMatch(buildTags: Tag[], agentTags: Tag[]): boolean {
  const offered = new Map(agentTags.map((t) => [t.key, t.value]));
  return buildTags.every((t) => offered.get(t.key) === t.value);
}
