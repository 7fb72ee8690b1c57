// Making elements and formatting values. Text is never parsed as HTML.

/** Makes an element: h('td', { class: 'mono' }, 'text', child…). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) if (c !== undefined && c !== null) el.append(c instanceof Node ? c : String(c));
  return el;
}

export const stateName = (s) => (s ?? 'BUILD_STATE_UNSPECIFIED').replace('BUILD_STATE_', '').toLowerCase();
export const drvName = (path) => (path ?? '').replace(/^.*\/[0-9a-z]{32}-/, '').replace(/\.drv$/, '');
export const shortId = (id) => (id ?? '').slice(0, 8);

export function ago(timestamp) {
  if (!timestamp) return '';
  const s = Math.max(0, (Date.now() - Date.parse(timestamp)) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** "… ago", kept current by refreshAgo() even where a section was not redrawn. */
export function when(timestamp) {
  return timestamp ? h('span', { title: timestamp, class: 'ago', 'data-ts': timestamp }, ago(timestamp)) : h('span', { class: 'muted' }, '—');
}

export function refreshAgo(root) {
  for (const el of root.querySelectorAll('.ago')) el.textContent = ago(el.dataset.ts);
}

export function bytes(n) {
  const v = Number(n ?? 0);
  if (!v) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  const i = Math.min(units.length - 1, Math.floor(Math.log(v) / Math.log(1024)));
  return `${(v / 1024 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
}

export const stateCell = (s) => h('span', { class: `state state-${stateName(s)}` }, stateName(s));
export const buildLink = (b, text = shortId(b.id)) => h('a', { href: `#/build/${b.id}`, class: 'mono' }, text);

/** The list's link for a filter: #/?state=…&tag=k=v… */
export function listHref(filter) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filter)) if (v) q.set(k, v);
  const text = q.toString();
  return `#/${text ? `?${text}` : ''}`;
}

export const tagLink = (t) => h('a', { href: listHref({ tag: `${t.key}=${t.value}` }), class: 'tag' }, `${t.key}=${t.value}`);

/** Folds: which are open survives redrawing (by id). */
const openFolds = new Set();

/**
 * The first `shown` items, and the rest inside a <details> that stays open once opened.
 * `render(items)` makes the elements of a slice.
 */
export function folded(id, items, shown, render, what = 'more') {
  if (items.length <= shown) return render(items);
  const rest = items.length - shown;
  const details = h(
    'details',
    { id, 'data-fold': id, open: openFolds.has(id), ontoggle: (e) => (e.target.open ? openFolds.add(id) : openFolds.delete(id)) },
    h('summary', {}, `${rest} ${what}`),
    render(items.slice(shown)),
  );
  return [render(items.slice(0, shown)), details].flat();
}

/** The last `lines` lines of a text, and how many there were. */
export function tail(text, lines) {
  const all = text.replace(/\n$/, '').split('\n');
  return { text: all.slice(-lines).join('\n'), total: all.length, cut: Math.max(0, all.length - lines) };
}
