// `npm run bench`: every benchmark in turn (never two at once: they share the machine's
// cores and page cache), then one summary table. Data is built once under bench-data/.
//
//   npm run bench [-- --only nar|upload|tracing]
import { benchNar, type BenchNarReport } from './nar.js';
import { benchTracing, type BenchTracingReport } from './tracing.js';
import { benchUpload, type BenchUploadReport } from './upload.js';

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
