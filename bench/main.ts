// `npm run bench`: every benchmark in turn (never two at once: they share the machine's
// cores and page cache), then one summary table. Data is built once under bench-data/.
//
//   npm run bench [-- --only nar|upload|tracing|schedule|abuse|upstream|serve] [--builds N] [--agents M] [--replicas R]
//                 [--engines postgres,pglite] [--anchor no] [--paths N] [--seconds S] [--large-mib M]
//                 [--serve-agents no]
import { benchAbuse, type AbuseRow } from './abuse.js';
import { benchNar, type BenchNarReport } from './nar.js';
import { benchServe, SCENARIOS, serveRatio, type BenchServeReport } from './serve.js';
import { benchSchedule, type BenchScheduleReport, type Engine } from './schedule.js';
import { benchTracing, type BenchTracingReport } from './tracing.js';
import { benchUpload, type BenchUploadReport } from './upload.js';
import { benchUpstream, type BenchUpstreamReport, type UpstreamEngine } from './upstream.js';

const MiB = 1 << 20;

interface Row {
  benchmark: string;
  figure: string;
  target: string;
  met: boolean | undefined;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const onlyAt = args.indexOf('--only');
  const only = onlyAt >= 0 ? args[onlyAt + 1] : undefined;
  const option = (name: string) => {
    const at = args.indexOf(`--${name}`);
    return at >= 0 ? args[at + 1] : undefined;
  };
  const started = performance.now();
  const rows: Row[] = [];

  if (!only || only === 'nar') {
    console.log('== NAR serialisation + SHA-256 (bench/nar.ts) ==');
    rows.push(...narRows(await benchNar({ rounds: 1 })));
  }
  if (!only || only === 'upload') {
    console.log('\n== Output upload, agent → coordinator (bench/upload.ts) ==');
    rows.push(...uploadRows(await benchUpload({ rounds: 2 })));
  }
  if (!only || only === 'tracing') {
    console.log('\n== Assignment throughput, tracing off vs on (bench/tracing.ts) ==');
    rows.push(...tracingRows(await benchTracing()));
  }
  if (!only || only === 'schedule') {
    console.log('\n== Scheduling: a queued build graph, simulated agents over real streams (bench/schedule.ts) ==');
    const number = (name: string) => (option(name) === undefined ? undefined : Number(option(name)));
    const engines = option('engines')?.split(',') as Engine[] | undefined;
    rows.push(...scheduleRows(await benchSchedule({ builds: number('builds'), agents: number('agents'), replicas: number('replicas'), engines, anchor: option('anchor') !== 'no' })));
  }

  if (!only || only === 'serve') {
    console.log('\n== Serving substitutes: kiln against nginx on the same files, wrk (bench/serve.ts) ==');
    const number = (name: string) => (option(name) === undefined ? undefined : Number(option(name)));
    const engines = option('engines')?.split(',') as Engine[] | undefined;
    rows.push(...serveRows(await benchServe({ paths: number('paths'), seconds: number('seconds'), largeMiB: number('large-mib'), engines, agents: option('serve-agents') !== 'no' })));
  }

  if (!only || only === 'abuse') {
    console.log('\n== Hostile input: event-loop delay and /healthz latency (bench/abuse.ts) ==');
    rows.push(...abuseRows(await benchAbuse()));
  }

  if (!only || only === 'upstream') {
    console.log('\n== Upstream cache: a DAG whose lower half an upstream holds (bench/upstream.ts) ==');
    rows.push(...upstreamRows(await benchUpstream({ engines: option('engines')?.split(',') as UpstreamEngine[] | undefined })));
  }

  console.log(`\n== Summary (${((performance.now() - started) / 1000).toFixed(0)} s) ==`);
  printTable(rows);
  if (rows.some((r) => r.met === false)) console.log('\nsome targets were missed (marked MISSED)');
}

function narRows(r: BenchNarReport): Row[] {
  return [
    { benchmark: 'NAR dumpPath + SHA-256', figure: `${r.kiln.mbPerSecond.toFixed(0)} MB/s`, target: '', met: undefined },
    { benchmark: 'nix-store --dump | sha256sum', figure: `${r.nix.mbPerSecond.toFixed(0)} MB/s`, target: '', met: undefined },
    { benchmark: 'NAR ratio kiln / nix', figure: r.ratio.toFixed(2), target: '≥ 0.8', met: r.ratio >= 0.8 },
    { benchmark: 'NAR dumpPath RSS growth', figure: `${(r.rss.peakDeltaBytes / MiB).toFixed(1)} MiB`, target: '', met: undefined },
  ];
}

function uploadRows(r: BenchUploadReport): Row[] {
  const t = r.throughput;
  const rows: Row[] = [
    { benchmark: 'upload 1 GiB, agent → recorded', figure: `${t.upload.mbPerSecond.toFixed(0)} MB/s`, target: '', met: undefined },
    { benchmark: 'lz4 compressFrame alone', figure: `${t.lz4Sequential.mbPerSecond.toFixed(0)} MB/s`, target: '', met: undefined },
    { benchmark: "lz4 compressFrame, uploader's window", figure: `${t.lz4Window.mbPerSecond.toFixed(0)} MB/s`, target: '', met: undefined },
    { benchmark: 'upload ratio / lz4 alone', figure: t.ratio.toFixed(2), target: '≥ 0.7', met: t.ratio >= 0.7 },
    { benchmark: 'upload ratio / lz4 window (both cores)', figure: t.ratioWindow.toFixed(2), target: '', met: undefined },
    { benchmark: 'LZ4 size / NAR size', figure: `${((100 * t.compressedBytes) / t.narBytes).toFixed(1)} %`, target: '', met: undefined },
  ];
  if (r.memory) {
    const m = r.memory;
    const gib = (m.narBytes / (1 << 30)).toFixed(0);
    rows.push(
      { benchmark: `upload ${gib} GiB, agent → recorded`, figure: `${m.upload.mbPerSecond.toFixed(0)} MB/s`, target: '', met: undefined },
      { benchmark: `coordinator RSS baseline / peak`, figure: `${(m.baselineBytes / MiB).toFixed(0)} / ${(m.peakBytes / MiB).toFixed(0)} MiB`, target: '', met: undefined },
      { benchmark: `coordinator RSS growth, ${gib} GiB upload`, figure: `${(m.growthBytes / MiB).toFixed(1)} MiB`, target: '< 64 MiB', met: m.growthBytes < 64 * MiB },
    );
  }
  return rows;
}

function tracingRows(r: BenchTracingReport): Row[] {
  return [
    { benchmark: 'assignment throughput, tracing off', figure: `${r.off.toFixed(0)} builds/s`, target: '', met: undefined },
    { benchmark: 'assignment throughput, tracing on (OTLP)', figure: `${r.on.toFixed(0)} builds/s`, target: '', met: undefined },
    { benchmark: 'tracing overhead', figure: `${r.overheadPercent.toFixed(1)} %`, target: '< 10 %', met: r.overheadPercent < 10 },
  ];
}

function scheduleRows(r: BenchScheduleReport): Row[] {
  const g = r.graphile;
  const rows: Row[] = [];
  if (g) rows.push({ benchmark: `graphile-worker, ${g.jobs} empty jobs`, figure: `${g.jobsPerSecond.toFixed(0)} jobs/s`, target: '', met: undefined });
  for (const e of r.engines) {
    const one = e.runs.find((run) => run.replicas === 1);
    const { single, batched } = e.submission;
    rows.push(
      { benchmark: `${e.engine}: SubmitBuild, one by one (${single.builds})`, figure: `${single.perSecond.toFixed(0)} builds/s`, target: '', met: undefined },
      { benchmark: `${e.engine}: SubmitBuilds, batches of 1,000 (${batched.builds})`, figure: `${batched.perSecond.toFixed(0)} builds/s`, target: '', met: undefined },
    );
    for (const run of e.runs) {
      const name = `${e.engine}, ${run.replicas} coordinator${run.replicas > 1 ? 's' : ''}, ${run.agents} agents`;
      const main = e.engine === 'postgres' && run.replicas === 1;
      rows.push(
        { benchmark: `${name}: assignments`, figure: `${run.sustainedPerSecond.toFixed(0)}/s`, target: main ? '≥ 2000/s' : '', met: main ? run.sustainedPerSecond >= 2000 : undefined },
        {
          benchmark: `${name}: scheduling latency p50 / p99 (steady)`,
          figure: `${run.schedulingLatency.p50.toFixed(1)} / ${run.schedulingLatency.p99.toFixed(1)} ms`,
          target: main ? 'p99 < 25 ms' : '',
          met: main ? run.schedulingLatency.p99 < 25 : undefined,
        },
        { benchmark: `${name}: ready → assigned p50 / p99, slot waits incl.`, figure: `${(run.queueLatency.p50 / 1000).toFixed(1)} / ${(run.queueLatency.p99 / 1000).toFixed(1)} s`, target: '', met: undefined },
      );
      if (g && main) {
        const ratio = run.sustainedPerSecond / g.jobsPerSecond;
        rows.push({ benchmark: `${name}: ratio to graphile-worker`, figure: ratio.toFixed(2), target: '≥ 0.5', met: ratio >= 0.5 });
      }
      if (e.engine === 'postgres' && run.replicas > 1 && one) {
        const gain = run.sustainedPerSecond / one.sustainedPerSecond;
        rows.push({ benchmark: `${name}: rate / 1 coordinator`, figure: gain.toFixed(2), target: '> 1', met: gain > 1 });
      }
    }
  }
  return rows;
}

function serveRows(r: BenchServeReport): Row[] {
  return r.engines.flatMap((e) => [
    ...SCENARIOS.map((s) => {
      const ratio = serveRatio(r, e, s);
      return { benchmark: `${e.engine}, ${e.paths} paths: ${s}, kiln / nginx`, figure: ratio.toFixed(2), target: '≥ 0.5', met: ratio >= 0.5 };
    }),
    ...(e.underAgents
      ? [{ benchmark: `${e.engine}: narinfo hits, agents busy / idle`, figure: (e.underAgents.hits.requestsPerSecond / e.kiln['narinfo hits'].requestsPerSecond).toFixed(2), target: '', met: undefined }]
      : []),
    ...(e.index ? [{ benchmark: `${e.engine}: cache index, bytes a path`, figure: (e.index.bytes / Math.max(1, e.index.paths)).toFixed(0), target: '< 64', met: e.index.bytes / Math.max(1, e.index.paths) < 64 }] : []),
    ...(['narinfo hits', 'narinfo misses'] as const).map((s) => ({
      benchmark: `${e.engine}: ${s} p99`,
      figure: `${e.kiln[s].p99Ms.toFixed(2)} ms`,
      target: e.engine === 'postgres' ? '< 5 ms' : '',
      met: e.engine === 'postgres' ? e.kiln[s].p99Ms < 5 : undefined,
    })),
  ]);
}

function abuseRows(rows: AbuseRow[]): Row[] {
  return rows.flatMap((r) => [
    { benchmark: `${r.input}: answered`, figure: `${r.answerMs.toFixed(0)} ms`, target: '', met: undefined },
    { benchmark: `${r.input}: event-loop delay max`, figure: `${r.loopDelayMaxMs.toFixed(0)} ms`, target: '< 100 ms', met: r.loopDelayMaxMs < 100 },
    { benchmark: `${r.input}: /healthz p99 / max`, figure: `${r.healthP99Ms.toFixed(1)} / ${r.healthMaxMs.toFixed(1)} ms`, target: 'max < 100 ms', met: r.healthMaxMs < 100 },
  ]);
}

function upstreamRows(r: BenchUpstreamReport): Row[] {
  return r.runs.flatMap((run) => {
    const name = `${run.engine}, ${run.upstream ? 'upstream' : 'no upstream'}, ${run.derivations}-drv DAG`;
    const ms = (x: number) => (Number.isNaN(x) ? 'never' : `${x.toFixed(0)} ms`);
    const rows: Row[] = [
      {
        benchmark: `${name}: builds made`,
        figure: `${run.builds}`,
        target: run.upstream ? `== ${run.expected} (upper half)` : `== ${run.expected}`,
        met: run.builds === run.expected,
      },
      { benchmark: `${name}: SubmitBuilds (top layer, closure texts)`, figure: ms(run.submitMs), target: '', met: undefined },
      { benchmark: `${name}: lowest kiln-built layer ready`, figure: ms(run.lowestReadyMs), target: '', met: undefined },
      { benchmark: `${name}: all builds made`, figure: ms(run.allBuildsMs), target: '', met: undefined },
    ];
    if (run.upstream) {
      rows.push(
        { benchmark: `${name}: upstream narinfo requests / hits / distinct`, figure: `${run.narinfoRequests} / ${run.narinfoHits} / ${run.distinctPaths}`, target: '', met: undefined },
        { benchmark: `${name}: narinfo requests per build made`, figure: run.builds > 0 ? (run.narinfoRequests / run.builds).toFixed(2) : '-', target: '', met: undefined },
      );
    }
    return rows;
  });
}

function printTable(rows: Row[]): void {
  const header: Row = { benchmark: 'benchmark', figure: 'figure', target: 'target', met: undefined };
  const status = (r: Row) => (r === header ? '' : r.met === undefined ? '' : r.met ? 'ok' : 'MISSED');
  const widths = [
    Math.max(...[header, ...rows].map((r) => r.benchmark.length)),
    Math.max(...[header, ...rows].map((r) => r.figure.length)),
    Math.max(...[header, ...rows].map((r) => r.target.length)),
  ];
  for (const r of [header, ...rows]) {
    console.log(`${r.benchmark.padEnd(widths[0]!)}  ${r.figure.padStart(widths[1]!)}  ${r.target.padEnd(widths[2]!)}  ${status(r)}`.trimEnd());
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
