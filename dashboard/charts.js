// The dashboard's charts, drawn as SVG by hand (no library, no build step): a stacked
// area over time, stacked bars per minute, and a step line per agent. Every drawn point
// carries data-at and data-value (and a <title> for a pointer hovering it).

const SVG = 'http://www.w3.org/2000/svg';
const W = 640;
const H = 160;
const PAD = { left: 36, right: 8, top: 8, bottom: 20 };

/** Makes an SVG element: s('rect', { x: 1 }, child…). */
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== undefined && c !== null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

/** A frame: the plot area's scales, the y axis with a few round ticks, and the first and last time. */
function frame(id, label, t0, t1, maxY) {
  const top = niceMax(maxY);
  const x = (t) => PAD.left + ((t - t0) / Math.max(1, t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const svg = s('svg', { id, class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, preserveAspectRatio: 'none' });
  for (const v of [0, top / 2, top]) {
    svg.append(
      s('line', { class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }),
      s('text', { class: 'tick', x: PAD.left - 4, y: y(v) + 4, 'text-anchor': 'end' }, Number.isInteger(v) ? v : v.toFixed(1)),
    );
  }
  svg.append(
    s('text', { class: 'tick', x: PAD.left, y: H - 4 }, clock(t0)),
    s('text', { class: 'tick', x: W - PAD.right, y: H - 4, 'text-anchor': 'end' }, clock(t1)),
  );
  return { svg, x, y };
}

function niceMax(v) {
  if (v <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
}

function legend(series) {
  const el = document.createElement('div');
  el.className = 'legend';
  for (const { name, cls } of series) {
    const key = document.createElement('span');
    key.className = `key ${cls}`;
    el.append(key, ` ${name} `);
  }
  return el;
}

/** Stacked areas over time: points [{ t (ms), values: { name: n } }], series [{ name, cls }] bottom first. */
export function stackedArea(id, label, points, series) {
  const t0 = points[0]?.t ?? Date.now();
  const t1 = points[points.length - 1]?.t ?? t0;
  const totals = points.map((p) => series.reduce((a, sr) => a + (p.values[sr.name] ?? 0), 0));
  const { svg, x, y } = frame(id, label, t0, t1, Math.max(0, ...totals));
  const below = points.map(() => 0);
  for (const sr of series) {
    const above = points.map((p, i) => below[i] + (p.values[sr.name] ?? 0));
    const edge = points.map((p, i) => `${x(p.t).toFixed(1)},${y(above[i]).toFixed(1)}`);
    const base = points.map((p, i) => `${x(p.t).toFixed(1)},${y(below[i]).toFixed(1)}`).reverse();
    if (points.length) svg.append(s('polygon', { class: `area ${sr.cls}`, points: [...edge, ...base].join(' ') }));
    points.forEach((p, i) => {
      const v = p.values[sr.name] ?? 0;
      svg.append(
        s('circle', { class: `point ${sr.cls}`, cx: x(p.t), cy: y(above[i]), r: 1.6, 'data-series': sr.name, 'data-at': new Date(p.t).toISOString(), 'data-value': v }, s('title', {}, `${clock(p.t)}: ${v} ${sr.name}`)),
      );
      below[i] = above[i];
    });
  }
  return [svg, legend(series)];
}

/** Stacked bars, one per bucket of `stepMs` from t0 to t1: buckets [{ t, values }]; empty ones are drawn as nothing. */
export function stackedBars(id, label, t0, t1, stepMs, buckets, series) {
  const totals = buckets.map((b) => series.reduce((a, sr) => a + (b.values[sr.name] ?? 0), 0));
  const { svg, x, y } = frame(id, label, t0, t1 + stepMs, Math.max(0, ...totals));
  const width = Math.max(1, x(t0 + stepMs) - x(t0) - 1);
  for (const b of buckets) {
    let below = 0;
    for (const sr of series) {
      const v = b.values[sr.name] ?? 0;
      if (v > 0) {
        svg.append(
          s(
            'rect',
            { class: `bar ${sr.cls}`, x: x(b.t), y: y(below + v), width, height: y(below) - y(below + v), 'data-series': sr.name, 'data-at': new Date(b.t).toISOString(), 'data-value': v },
            s('title', {}, `${clock(b.t)}: ${v} ${sr.name}`),
          ),
        );
      }
      below += v;
    }
  }
  return [svg, legend(series)];
}

/** One step line: times (ms), the value over the step that ends at each, and a dashed ceiling (slots) when known. */
export function stepLine(id, label, times, values, ceiling) {
  const t0 = times[0] ?? Date.now();
  const t1 = times[times.length - 1] ?? t0;
  const { svg, x, y } = frame(id, label, t0, t1, Math.max(ceiling ?? 0, ...values));
  if (ceiling) svg.append(s('line', { class: 'ceiling', x1: PAD.left, x2: W - PAD.right, y1: y(ceiling), y2: y(ceiling) }, s('title', {}, `${ceiling} slots`)));
  // Each value holds over the step that ends at its moment.
  const path = times.map((t, i) => (i ? `V${y(values[i]).toFixed(1)} H${x(t).toFixed(1)}` : `M${x(t).toFixed(1)},${y(values[i]).toFixed(1)}`)).join(' ');
  if (times.length) svg.append(s('path', { class: 'line', d: path }));
  times.forEach((t, i) =>
    svg.append(s('circle', { class: 'point', cx: x(t), cy: y(values[i]), r: 1.6, 'data-at': new Date(t).toISOString(), 'data-value': values[i] }, s('title', {}, `${clock(t)}: ${values[i].toFixed(2)} builds held on average`))),
  );
  return svg;
}
