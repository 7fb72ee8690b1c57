// Text from outside kiln (agents' messages, hooks' errors) made storable: PostgreSQL's
// text and jsonb refuse a NUL character, and a lone surrogate has no UTF-8 form, so one
// such character in a build's failure message would make its report unrecordable.

/** What a message is cut to: a failure message is a summary; the log holds the rest. */
export const MAX_STORED_MESSAGE = 16 * 1024;

const REPLACEMENT = '\uFFFD';
// A NUL, a high surrogate not followed by a low one, or a low one not preceded by a high one.
// eslint-disable-next-line no-control-regex -- NUL is what is being replaced
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** `text` with NULs and lone surrogates replaced by U+FFFD, at most `maxChars` UTF-16 units (cut marked with …). */
export function storableText(text: string, maxChars = MAX_STORED_MESSAGE): string {
  let s = text;
  if (s.length > maxChars) {
    s = s.slice(0, Math.max(0, maxChars - 1));
    // Never cut a surrogate pair in two.
    if (/[\uD800-\uDBFF]$/.test(s)) s = s.slice(0, -1);
    s += '…';
  }
  return s.replace(UNSTORABLE, REPLACEMENT);
}
