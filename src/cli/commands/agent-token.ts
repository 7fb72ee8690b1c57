// `kiln agent token new|list|revoke`: registration tokens agents register themselves with.
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { RegistrationToken } from '../../../gen/kiln/v1/admin_pb.js';
import { adminClientFor } from '../admin-client.js';
import { printJson } from '../output.js';
import { CLIENT_OPTIONS, exactlyOne, parse, tagsFrom } from '../options.js';
import { UsageError } from '../usage-error.js';
import { parseDuration } from '../../durations.js';

/** `--expires`: a time from now (30m, 12h, 7d) or an ISO 8601 date. */
export function expiryFrom(text: string, now: Date = new Date()): Date {
  const relative = parseDuration(text);
  if (relative !== undefined) return new Date(now.getTime() + relative);
  const date = /^\d{4}-\d\d-\d\d/.test(text) ? new Date(text) : new Date(NaN);
  if (Number.isNaN(date.getTime())) throw new UsageError(`--expires ${JSON.stringify(text)}: give a time from now (30m, 12h, 7d) or a date (2026-12-31T00:00:00Z)`);
  if (date <= now) throw new UsageError(`--expires ${text} has passed`);
  return date;
}

function tokenJson(t: RegistrationToken) {
  return {
    id: t.id,
    tags: t.tags.map(({ key, value }) => ({ key, value })),
    createdAt: t.createdAt ? timestampDate(t.createdAt).toISOString() : null,
    expiresAt: t.expiresAt ? timestampDate(t.expiresAt).toISOString() : null,
    revokedAt: t.revokedAt ? timestampDate(t.revokedAt).toISOString() : null,
    registrations: t.registrations,
  };
}

function tokenLine(t: RegistrationToken): string {
  const j = tokenJson(t);
  const state = j.revokedAt ? `revoked ${j.revokedAt}` : j.expiresAt ? `expires ${j.expiresAt}` : 'never expires';
  const tags = j.tags.map((x) => `${x.key}=${x.value}`).join(',') || '-';
  return `${j.id}  ${state}  registrations=${j.registrations}  tags=${tags}`;
}

export async function agentTokenCommand(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'new': {
      const { values, positionals } = parse(rest, { ...CLIENT_OPTIONS, tag: { type: 'string', multiple: true }, expires: { type: 'string' } });
      if (positionals.length) throw new UsageError(`kiln agent token new takes no arguments, got ${positionals.join(' ')}`);
      const expiresAt = values.expires !== undefined ? timestampFromDate(expiryFrom(values.expires)) : undefined;
      const client = adminClientFor(values);
      const { token, secret } = await client.createRegistrationToken({ tags: tagsFrom(values.tag), expiresAt });
      // The secret alone on stdout, so that `> token-file` gives what --register-token reads.
      if (values.json) printJson({ ...tokenJson(token!), secret });
      else console.log(secret);
      return;
    }
    case 'list': {
      const { values, positionals } = parse(rest, CLIENT_OPTIONS);
      if (positionals.length) throw new UsageError('kiln agent token list takes no arguments');
      const client = adminClientFor(values);
      const { tokens } = await client.listRegistrationTokens({});
      if (values.json) printJson(tokens.map(tokenJson));
      else for (const t of tokens) console.log(tokenLine(t));
      return;
    }
    case 'revoke': {
      const { values, positionals } = parse(rest, CLIENT_OPTIONS);
      const id = exactlyOne(positionals, 'token id');
      const client = adminClientFor(values);
      const { token } = await client.revokeRegistrationToken({ id });
      if (values.json) printJson(tokenJson(token!));
      else console.log(tokenLine(token!));
      return;
    }
    default:
      throw new UsageError(`unknown agent token command ${JSON.stringify(sub ?? '')}: use new, list or revoke`);
  }
}
