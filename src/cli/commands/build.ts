// `kiln build …`: submit derivations and look after builds.
import { resolve } from 'node:path';
import { ExistingOutputs, type Reproducibility, type SubmitBuildResponse } from '../../../gen/kiln/v1/admin_pb.js';
import { BuildState, type Build } from '../../../gen/kiln/v1/types_pb.js';
import { adminClientFor, type AdminClient } from '../admin-client.js';
import { readDerivationClosure } from '../derivation-closure.js';
import { uploadMissingSources } from '../source-upload.js';
import { bareOption, CLIENT_OPTIONS, exactlyOne, existingOutputsFrom, intFrom, parse, priorityFrom, secondsFrom, tagsFrom, type ExistingOutputsChoice } from '../options.js';
import { watchBuilds } from '../build-watch.js';
import { UnavailableRetry } from '../unavailable-retry.js';
import { Code, ConnectError } from '@connectrpc/connect';
import { buildJson, buildLine, buildText, printJson } from '../output.js';
import { UsageError } from '../usage-error.js';
import { checkedBuildJson, reproducibilityText } from '../reproducibility-text.js';


const client = adminClientFor;

function stateFrom(text: string): BuildState {
  const state = BuildState[text.toUpperCase() as keyof typeof BuildState];
  if (state === undefined || state === BuildState.UNSPECIFIED) {
    const names = Object.keys(BuildState).filter((k) => Number.isNaN(Number(k)) && k !== 'UNSPECIFIED');
    throw new UsageError(`--state ${JSON.stringify(text)} is not one of ${names.map((n) => n.toLowerCase()).join(', ')}`);
  }
  return state;
}

export async function buildCommand(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'submit':
      return submit(rest);
    case 'show': {
      const { values, positionals } = parse(rest, CLIENT_OPTIONS);
      const { build, reproducibility } = await client(values).getBuild({ id: exactlyOne(positionals, 'build id') });
      console.log(values.json ? JSON.stringify(checkedBuildJson(build!, reproducibility), null, 2) : checkedBuildText(build!, reproducibility));
      return;
    }
    case 'check':
      return check(rest);
    case 'list':
      return list(rest);
    case 'log':
      return log(rest);
    case 'watch': {
      const { values, positionals } = parse(rest, CLIENT_OPTIONS);
      if (positionals.length === 0) throw new UsageError('kiln build watch needs at least one build id');
      if (!(await watchBuilds(client(values), positionals, { json: values.json, tty: Boolean(process.stdout.isTTY) }))) process.exitCode = 1;
      return;
    }
    case 'cancel': {
      const { values, positionals } = parse(rest, CLIENT_OPTIONS);
      const { build } = await client(values).cancelBuild({ id: exactlyOne(positionals, 'build id') });
      console.log(values.json ? JSON.stringify(buildJson(build!), null, 2) : buildLine(build!));
      return;
    }
    case 'priority': {
      const { values, positionals } = parse(rest, CLIENT_OPTIONS);
      if (positionals.length !== 2) throw new UsageError('usage: kiln build priority <build-id> <priority>');
      const priority = priorityFrom(positionals[1], 'priority')!;
      const { build } = await client(values).setBuildPriority({ id: positionals[0]!, priority });
      console.log(values.json ? JSON.stringify(buildJson(build!), null, 2) : buildLine(build!));
      return;
    }
    case 'retry': {
      const { values, positionals } = parse(rest, CLIENT_OPTIONS);
      const { build } = await client(values).retryBuild({ id: exactlyOne(positionals, 'build id') });
      console.log(values.json ? JSON.stringify(buildJson(build!), null, 2) : buildLine(build!));
      return;
    }
    case 'tag': {
      const { values, positionals } = parse(rest, { ...CLIENT_OPTIONS, remove: { type: 'string', multiple: true } });
      const [id, ...tags] = positionals;
      if (!id) throw new UsageError('usage: kiln build tag <build-id> [k=v]... [--remove KEY]...');
      const { build } = await client(values).updateBuildTags({ id, set: tagsFrom(tags), removeKeys: values.remove ?? [] });
      console.log(values.json ? JSON.stringify(buildJson(build!), null, 2) : buildLine(build!));
      return;
    }
    default:
      throw new UsageError(`unknown build command ${JSON.stringify(sub ?? '')}: use submit, show, check, log, watch, list, cancel, retry, priority or tag`);
  }
}

async function submit(args: string[]): Promise<void> {
  const { values, positionals } = parse(bareOption(args, 'ignore-if-output-exists', 'kiln'), {
    ...CLIENT_OPTIONS,
    priority: { type: 'string' },
    tag: { type: 'string', multiple: true },
    id: { type: 'string' },
    'ignore-if-output-exists': { type: 'string' },
    timeout: { type: 'string' },
    'max-silent-time': { type: 'string' },
    'check-reproducible': { type: 'string' },
    'check-reproducible-by': { type: 'string' },
    wait: { type: 'boolean', default: false },
  });
  if (positionals.length === 0) throw new UsageError('kiln build submit needs at least one .drv path');
  if (values.id && positionals.length > 1) throw new UsageError('--id names one build: submit one derivation with it');
  const priority = priorityFrom(values.priority, '--priority') ?? 0;
  const timeoutSeconds = secondsFrom(values.timeout, '--timeout');
  const maxSilentSeconds = secondsFrom(values['max-silent-time'], '--max-silent-time');
  const tags = tagsFrom(values.tag);
  const existing = existingOutputsFrom(values['ignore-if-output-exists']);
  const checkReproducible = agentsFrom(values['check-reproducible'], '--check-reproducible') ?? 0;
  if (values['check-reproducible-by'] !== undefined && !checkReproducible) throw new UsageError('--check-reproducible-by needs --check-reproducible N');
  const admin = client(values);
  const results = [];
  for (const drvPath of positionals) {
    const derivations = await readDerivationClosure(drvPath);
    const res = await admin.submitBuild({
      // Without the file here, by path: the coordinator fetches it from an upstream.
      derivationPath: derivations[0]?.path ?? resolve(drvPath),
      derivations,
      buildId: values.id ?? '',
      priority,
      tags,
      // Field 6 too, for a coordinator older than existing_outputs.
      ignoreIfOutputExists: existing !== 'none',
      existingOutputs: EXISTING_OUTPUTS[existing],
      timeoutSeconds,
      maxSilentSeconds,
      checkReproducible,
      checkReproducibleBy: values['check-reproducible-by'] ?? '',
    });
    // After the submission, which the coordinator checks each source against; the build
    // is not allocated before its sources are in the cache. No build, no sources needed.
    if (!res.availableUpstream) await uploadMissingSources(admin, derivations);
    results.push(res);
    if (!values.json) console.log(submittedLine(derivations[0]?.path ?? resolve(drvPath), res));
  }
  // Nothing to watch for a derivation an upstream has.
  const made = results.flatMap((r) => (r.build ? [r.build.id] : []));
  if (values.json && (!values.wait || made.length === 0)) {
    printJson(results.map((r) => (r.availableUpstream ? { build: null, existing: false, availableUpstream: true } : { build: buildJson(r.build!), existing: r.existing, availableUpstream: false })));
  }
  if (values.wait && made.length > 0 && !(await watchBuilds(admin, made, { json: values.json, tty: Boolean(process.stdout.isTTY) }))) process.exitCode = 1;
}

/** A number of agents for a reproducibility check (the coordinator checks the range). */
function agentsFrom(text: string | undefined, what: string): number | undefined {
  const n = intFrom(text, what);
  if (n !== undefined && n < 2) throw new UsageError(`${what} ${n}: a reproducibility check needs 2 or more agents in all (the build's own included)`);
  return n;
}

/** `kiln build check <build-id> N [--by TAG]`: builds it on N distinct agents in all and compares the outputs. */
async function check(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { ...CLIENT_OPTIONS, by: { type: 'string' } });
  if (positionals.length !== 2) throw new UsageError('usage: kiln build check <build-id> <agents> [--by TAG]');
  const agents = agentsFrom(positionals[1], 'agents')!;
  const { build, reproducibility } = await client(values).checkBuild({ buildId: positionals[0]!, agents, byTag: values.by ?? '' });
  console.log(values.json ? JSON.stringify(checkedBuildJson(build!, reproducibility), null, 2) : checkedBuildText(build!, reproducibility));
}

function checkedBuildText(build: Build, check: Reproducibility | undefined): string {
  return check ? `${buildText(build)}\n${reproducibilityText(check)}` : buildText(build);
}

const EXISTING_OUTPUTS: Record<ExistingOutputsChoice, ExistingOutputs> = {
  none: ExistingOutputs.UNSPECIFIED,
  kiln: ExistingOutputs.KILN,
  upstream: ExistingOutputs.UPSTREAM,
};

function submittedLine(drvPath: string, res: SubmitBuildResponse): string {
  if (res.availableUpstream) return `${drvPath}: no build made, its outputs are available from an upstream cache`;
  return res.existing ? `${res.build!.id} (existing build)` : res.build!.id;
}

/** `kiln build log ID [--attempt N] [--follow]`: an attempt's log; --follow waits for it to arrive. */
async function log(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { ...CLIENT_OPTIONS, attempt: { type: 'string' }, follow: { type: 'boolean', default: false } });
  const id = exactlyOne(positionals, 'build id');
  const attempt = intFrom(values.attempt, '--attempt') ?? 0;
  if (attempt < 0 || (values.attempt !== undefined && attempt === 0)) throw new UsageError('--attempt counts from 1');
  const admin = client(values);
  // With --follow, a coordinator briefly out of reach is waited for; a log cut off by it
  // is asked again and goes on from the byte where it stopped (a stored log never changes).
  const retry = values.follow ? new UnavailableRetry() : undefined;
  const chunks: Uint8Array[] = [];
  let written = 0;
  let number = attempt;
  const read = async () => {
    let skip = written;
    // Asked again, the attempt read before, not a newer one.
    for await (const res of admin.getBuildLog({ id, attempt: number })) {
      number = res.attempt;
      const chunk = res.chunk.subarray(Math.min(skip, res.chunk.length));
      skip -= res.chunk.length - chunk.length;
      if (chunk.length === 0) continue;
      if (values.json) chunks.push(chunk);
      else process.stdout.write(chunk);
      written += chunk.length;
    }
  };
  for (;;) {
    try {
      await (retry ? retry.run(read) : read());
      if (values.json) printJson({ buildId: id, attempt: number, log: Buffer.concat(chunks).toString('utf8') });
      return;
    } catch (err) {
      if (!retry || !(err instanceof ConnectError) || err.code !== Code.NotFound || !(await retry.run(() => stillComing(admin, id, attempt)))) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}

/** Whether a log not there yet may still come: the attempt (or, for the latest, the build) has not ended. */
async function stillComing(admin: AdminClient, id: string, attempt: number): Promise<boolean> {
  const { build } = await admin.getBuild({ id });
  if (attempt === 0) return ![BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELED].includes(build!.state);
  const a = build!.attempts.find((x) => x.attempt === attempt);
  return a !== undefined && !a.outcome;
}

async function list(args: string[]): Promise<void> {
  const { values, positionals } = parse(args, {
    ...CLIENT_OPTIONS,
    state: { type: 'string', multiple: true },
    tag: { type: 'string', multiple: true },
    derivation: { type: 'string' },
    limit: { type: 'string' },
  });
  if (positionals.length) throw new UsageError('kiln build list takes no arguments; filter with --state, --tag, --derivation');
  const limit = intFrom(values.limit, '--limit') ?? 100;
  const admin = client(values);
  const builds = [];
  let pageToken = '';
  do {
    const page = await admin.listBuilds({
      states: (values.state ?? []).map(stateFrom),
      tags: tagsFrom(values.tag),
      derivationPath: values.derivation ?? '',
      pageSize: Math.min(limit - builds.length, 1000),
      pageToken,
    });
    builds.push(...page.builds);
    pageToken = page.nextPageToken;
  } while (pageToken && builds.length < limit);
  if (values.json) printJson(builds.map(buildJson));
  else for (const b of builds) console.log(buildLine(b));
}
