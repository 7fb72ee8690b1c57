// `kiln qa …`: quality assurance of what the farm built: challenges against other caches,
// and re-checks of fixed-output derivations.
import { toJson } from '@bufbuild/protobuf';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import {
  ChallengeCachesResponseSchema,
  ChallengeVerdict,
  FixedOutputCheckOutcome,
  FixedOutputCheckSchema,
  type FixedOutputCheck,
} from '../../../gen/kiln/v1/admin_pb.js';
import { DURATION_EXAMPLES, parseDuration } from '../../durations.js';
import { adminClientFor, type AdminClient } from '../admin-client.js';
import { CLIENT_OPTIONS, intFrom, parse, priorityFrom, tagsFrom } from '../options.js';
import { printJson } from '../output.js';
import { UsageError } from '../usage-error.js';

/** How often `--wait` asks how the checks stand. */
const POLL_MS = 1000;

export async function qaCommand(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'challenge':
      return challenge(rest);
    case 'fod-check':
      return fodCheck(rest);
    case 'fod-checks':
      return fodChecks(rest);
    default:
      throw new UsageError(`unknown qa command ${JSON.stringify(sub ?? '')}: use challenge, fod-check or fod-checks`);
  }
}

const verdictName = (v: ChallengeVerdict) => (ChallengeVerdict[v] ?? 'UNSPECIFIED').toLowerCase();
const outcomeName = (o: FixedOutputCheckOutcome) => (FixedOutputCheckOutcome[o] ?? 'UNSPECIFIED').toLowerCase();

/** Exits 2 when a cache gave another NAR hash for a path (as a diff does for a difference). */
async function challenge(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    ...CLIENT_OPTIONS,
    upstream: { type: 'string', multiple: true },
    tag: { type: 'string', multiple: true },
    limit: { type: 'string' },
  });
  if (positionals.length) throw new UsageError(`kiln qa challenge takes no arguments, got ${positionals.join(' ')}`);
  const client = adminClientFor(values);
  const r = await client.challengeCaches({ caches: values.upstream ?? [], tags: tagsFrom(values.tag), limit: intFrom(values.limit, '--limit') ?? 0 });
  if (values.json) {
    printJson(toJson(ChallengeCachesResponseSchema, r, { alwaysEmitImplicit: true }));
  } else {
    for (const p of r.paths) {
      for (const v of p.verdicts) {
        const name = verdictName(v.verdict);
        if (v.verdict === ChallengeVerdict.MISMATCH) {
          console.log(`mismatch ${p.storePath}\n  kiln            ${p.narHash}\n  ${v.cache} ${v.narHash}${v.trusted ? '' : ' (not signed by a trusted key)'}`);
        } else if (v.verdict === ChallengeVerdict.MATCH) {
          console.log(`match    ${p.storePath} ${v.cache}`);
        } else {
          console.log(`${name.padEnd(8)} ${p.storePath} ${v.cache}${v.verdict === ChallengeVerdict.ERROR ? `: ${v.reason}` : ''}`);
        }
      }
    }
    for (const s of r.summaries) {
      console.log(`${s.cache}: ${r.paths.length} path(s) built by kiln: ${s.matches} identical, ${s.mismatches} different, ${s.missing} missing there, ${s.errors} unanswered`);
    }
  }
  if (r.summaries.some((s) => s.mismatches > 0)) process.exitCode = 2;
}

function checkJson(c: FixedOutputCheck): unknown {
  return toJson(FixedOutputCheckSchema, c, { alwaysEmitImplicit: true });
}

function checkText(c: FixedOutputCheck): string {
  const when = c.finishedAt ? timestampDate(c.finishedAt) : c.requestedAt ? timestampDate(c.requestedAt) : undefined;
  const head = `${outcomeName(c.outcome).padEnd(8)} ${c.derivationPath} build ${c.buildId}${when ? ` ${when.toISOString()}` : ''}`;
  return c.message ? `${head}\n${c.message.replace(/^/gm, '  ')}` : head;
}

/** Submits re-checks; with --wait, follows them to their end and exits 1 if one failed. */
async function fodCheck(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    ...CLIENT_OPTIONS,
    tag: { type: 'string', multiple: true },
    name: { type: 'string' },
    'older-than': { type: 'string' },
    priority: { type: 'string' },
    limit: { type: 'string' },
    wait: { type: 'boolean', default: false },
  });
  if (positionals.length) throw new UsageError(`kiln qa fod-check takes no arguments (filters are --tag, --name, --older-than), got ${positionals.join(' ')}`);
  let olderThanMs = 0;
  if (values['older-than'] !== undefined) {
    const ms = parseDuration(values['older-than']);
    if (ms === undefined) throw new UsageError(`--older-than ${JSON.stringify(values['older-than'])}: give a length of time (${DURATION_EXAMPLES})`);
    olderThanMs = ms;
  }
  const client = adminClientFor(values);
  const r = await client.checkFixedOutputs({
    tags: tagsFrom(values.tag),
    name: values.name ?? '',
    olderThanSeconds: BigInt(Math.floor(olderThanMs / 1000)),
    priority: priorityFrom(values.priority, '--priority'),
    limit: intFrom(values.limit, '--limit') ?? 0,
  });
  let checks = r.checks;
  if (values.wait && checks.length > 0) checks = await waitForChecks(client, checks, values.json ? undefined : (c) => console.log(checkText(c)));
  if (values.json) {
    printJson({ checks: checks.map(checkJson), alreadyChecking: r.alreadyChecking });
  } else {
    if (!values.wait) for (const c of checks) console.log(`checking ${c.derivationPath} (build ${c.buildId})`);
    for (const path of r.alreadyChecking) console.log(`already checking ${path}`);
    if (checks.length === 0 && r.alreadyChecking.length === 0) console.log('no fixed-output derivation to check (kiln checks those it built that the filters select)');
  }
  if (checks.some((c) => c.outcome === FixedOutputCheckOutcome.FAILED)) process.exitCode = 1;
}

/** Asks until every check has ended; `ended` hears of each as it does. */
async function waitForChecks(client: AdminClient, checks: FixedOutputCheck[], ended?: (c: FixedOutputCheck) => void): Promise<FixedOutputCheck[]> {
  const current = new Map(checks.map((c) => [c.buildId, c]));
  const open = () => [...current.values()].filter((c) => c.outcome === FixedOutputCheckOutcome.PENDING);
  while (open().length > 0) {
    const { checks: now } = await client.listFixedOutputChecks({ derivationPaths: [...new Set(open().map((c) => c.derivationPath))], pageSize: 1000 });
    for (const c of now) {
      const before = current.get(c.buildId);
      if (!before || before.outcome !== FixedOutputCheckOutcome.PENDING || c.outcome === FixedOutputCheckOutcome.PENDING) continue;
      current.set(c.buildId, c);
      ended?.(c);
    }
    if (open().length > 0) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  return [...current.values()];
}

async function fodChecks(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    ...CLIENT_OPTIONS,
    derivation: { type: 'string', multiple: true },
    failed: { type: 'boolean', default: false },
    latest: { type: 'boolean', default: false },
    limit: { type: 'string' },
  });
  if (positionals.length) throw new UsageError(`kiln qa fod-checks takes no arguments (use --derivation DRV), got ${positionals.join(' ')}`);
  const client = adminClientFor(values);
  const { checks } = await client.listFixedOutputChecks({
    derivationPaths: values.derivation ?? [],
    outcomes: values.failed ? [FixedOutputCheckOutcome.FAILED] : [],
    latestOnly: values.latest,
    pageSize: intFrom(values.limit, '--limit') ?? 0,
  });
  if (values.json) printJson({ checks: checks.map(checkJson) });
  else for (const c of checks) console.log(checkText(c));
}
