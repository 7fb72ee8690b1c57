// kiln's dashboard: a read-only view of the farm, fed by AdminService through the
// Connect protocol's JSON over HTTP (POST /kiln.v1.AdminService/<Method>), refreshed
// every few seconds. The token comes once in the link the coordinator prints
// (#token=…, the read-only dashboard token) or is pasted into the form; it is kept in
// this browser's localStorage and sent as a bearer token.

const TOKEN_KEY = 'kiln-dashboard-token';
const REFRESH_MS = 3000;
const main = document.getElementById('main');
const statusLine = document.getElementById('status');
const forgetButton = document.getElementById('forget');

/** Makes an element: h('td', { class: 'mono' }, 'text', child…). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null) el.append(c instanceof Node ? c : String(c));
  return el;
}

class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function token() {
  return localStorage.getItem(TOKEN_KEY) ?? '';
}

/** One AdminService call as Connect JSON. */
async function call(method, request = {}) {
  const res = await fetch(`/kiln.v1.AdminService/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'connect-protocol-version': '1', authorization: `Bearer ${token()}` },
    body: JSON.stringify(request),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(body.code ?? `http ${res.status}`, body.message ?? res.statusText);
  return body;
}

// ---- formatting ---------------------------------------------------------------------

const stateName = (s) => (s ?? 'BUILD_STATE_UNSPECIFIED').replace('BUILD_STATE_', '').toLowerCase();
const drvName = (path) => (path ?? '').replace(/^.*\/[0-9a-z]{32}-/, '').replace(/\.drv$/, '');
const shortId = (id) => (id ?? '').slice(0, 8);

function ago(timestamp) {
  if (!timestamp) return '';
  const s = Math.max(0, (Date.now() - Date.parse(timestamp)) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function when(timestamp) {
  return timestamp ? h('span', { title: timestamp }, ago(timestamp)) : h('span', { class: 'muted' }, '—');
}

function bytes(n) {
  const v = Number(n ?? 0);
  if (!v) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  const i = Math.min(units.length - 1, Math.floor(Math.log(v) / Math.log(1024)));
  return `${(v / 1024 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
}

const stateCell = (s) => h('span', { class: `state state-${stateName(s)}` }, stateName(s));
const buildLink = (b) => h('a', { href: `#/build/${b.id}`, class: 'mono' }, shortId(b.id));

// ---- views ---------------------------------------------------------------------------

let stateFilter = '';

async function overview() {
  const [summary, agents, builds] = await Promise.all([
    call('GetQueueSummary'),
    call('ListAgents'),
    call('ListBuilds', { pageSize: 50, states: stateFilter ? [stateFilter] : [] }),
  ]);
  const total = (state) => (summary.counts ?? []).filter((c) => c.state === state).reduce((a, c) => a + (c.count ?? 0), 0);
  const ready = (summary.ready ?? []).reduce((a, r) => a + (r.count ?? 0), 0);
  const oldest = (summary.ready ?? []).map((r) => r.oldestCreatedAt).sort()[0];
  const card = (n, label, extra) => h('div', { class: 'card' }, h('div', { class: 'n' }, n), h('div', { class: 'label' }, label), extra);

  const filter = h(
    'select',
    { id: 'state-filter', onchange: (e) => ((stateFilter = e.target.value), refresh()) },
    ['', 'SCHEDULED', 'ALLOCATED', 'STARTED', 'SUCCEEDED', 'FAILED', 'CANCELED'].map((s) =>
      h('option', { value: s ? `BUILD_STATE_${s}` : '', selected: (s ? `BUILD_STATE_${s}` : '') === stateFilter }, s ? s.toLowerCase() : 'all states'),
    ),
  );

  return [
    h('h2', {}, 'Queue'),
    h(
      'section',
      { class: 'cards', id: 'queue' },
      card(total('BUILD_STATE_SCHEDULED'), 'scheduled'),
      card(ready, 'ready for an agent', oldest ? h('div', { class: 'label' }, `oldest submitted ${ago(oldest)}`) : undefined),
      card(total('BUILD_STATE_ALLOCATED'), 'allocated'),
      card(total('BUILD_STATE_STARTED'), 'started'),
      card(summary.connectedAgents ?? 0, 'agents connected'),
    ),
    (summary.counts ?? []).length
      ? h(
          'table',
          { id: 'queue-by-system' },
          h('tr', {}, h('th', {}, 'system'), h('th', {}, 'state'), h('th', {}, 'builds')),
          summary.counts.map((c) => h('tr', {}, h('td', {}, c.system), h('td', {}, stateCell(c.state)), h('td', {}, c.count ?? 0))),
        )
      : undefined,
    h('h2', {}, 'Agents'),
    h(
      'table',
      { id: 'agents' },
      h('tr', {}, ['name', 'id', 'stream', 'systems', 'free / slots', 'holding', 'load', 'free disk', 'last seen'].map((t) => h('th', {}, t))),
      (agents.agents ?? []).map((a) => {
        const c = a.connection;
        const stream = !a.active ? 'deactivated' : c ? (c.draining ? 'draining' : 'connected') : 'not connected here';
        return h(
          'tr',
          {},
          h('td', {}, a.name || h('span', { class: 'muted' }, '(unnamed)')),
          h('td', { class: 'mono', title: a.id }, shortId(a.id)),
          h('td', { class: c ? '' : 'muted' }, stream),
          h('td', {}, c ? (c.systems ?? []).join(' ') : ''),
          h('td', {}, c ? `${c.freeSlots ?? 0} / ${c.maxParallelBuilds ?? 0}` : ''),
          h('td', {}, c ? c.holding ?? 0 : ''),
          h('td', {}, c ? `${(c.loadAverage ?? 0).toFixed(2)}${c.cpuCount ? ` on ${c.cpuCount} CPUs` : ''}` : ''),
          h('td', {}, c ? bytes(c.freeDiskBytes) : ''),
          h('td', {}, c ? when(c.lastSeen) : ''),
        );
      }),
    ),
    h('h2', {}, 'Recent builds', filter),
    h(
      'table',
      { id: 'builds' },
      h('tr', {}, ['build', 'derivation', 'system', 'state', 'priority', 'attempts', 'agent', 'submitted', 'updated'].map((t) => h('th', {}, t))),
      (builds.builds ?? []).map((b) =>
        h(
          'tr',
          { 'data-build-id': b.id },
          h('td', {}, buildLink(b)),
          h('td', { title: b.derivationPath }, drvName(b.derivationPath)),
          h('td', {}, b.system),
          h('td', {}, stateCell(b.state)),
          h('td', {}, b.derivedPriority ?? 0),
          h('td', {}, b.attemptCount ?? 0),
          h('td', { class: 'mono' }, shortId(b.agentId)),
          h('td', {}, when(b.createdAt)),
          h('td', {}, when(b.updatedAt)),
        ),
      ),
    ),
  ];
}

async function buildPage(id) {
  const { build: b } = await call('GetBuild', { id });
  const attempts = b.attempts ?? [];
  const field = (label, value) => [h('dt', {}, label), h('dd', {}, value)];
  const parts = [
    h('h2', {}, 'Build ', h('span', { class: 'mono' }, b.id)),
    h(
      'dl',
      { class: 'fields', id: 'build-fields' },
      field('derivation', h('span', { class: 'mono' }, b.derivationPath)),
      field('state', stateCell(b.state)),
      field('system', b.system),
      field('priority', `${b.priority ?? 0} (derived ${b.derivedPriority ?? 0})`),
      field('tags', (b.tags ?? []).map((t) => `${t.key}=${t.value}`).join(' ') || '—'),
      field('waiting for inputs', String(b.waitingInputs ?? 0)),
      field('required features', (b.requiredFeatures ?? []).join(' ') || '—'),
      b.waitReason ? field('why it waits', h('span', { id: 'wait-reason', 'data-kind': b.waitReason.kind }, b.waitReason.text)) : [],
      ...(b.failureReason
        ? [field('failed because', `${b.failureReason}${b.failedInput ? `: input ${b.failedInput}` : ''}${b.failedInputBuildId ? ` (build ${b.failedInputBuildId} failed)` : ''}`)]
        : []),
      field('submitted', when(b.createdAt)),
      field('ended', when(b.endedAt)),
      field('trace id (latest attempt)', h('span', { class: 'mono', id: 'trace-id' }, attempts.length ? attempts[attempts.length - 1].traceId : '—')),
    ),
    (b.waitReason?.missingInputs ?? []).length
      ? [
          h('h2', {}, 'Missing inputs'),
          h(
            'table',
            { id: 'missing-inputs' },
            h('tr', {}, h('th', {}, 'path'), h('th', {}, 'made by'), h('th', {}, 'upstream asked')),
            b.waitReason.missingInputs.map((m) =>
              h('tr', {}, h('td', { class: 'mono' }, m.path), h('td', {}, m.buildId ? buildLink({ id: m.buildId }) : 'no build'), h('td', {}, m.upstreamAsked ? 'yes' : 'no')),
            ),
          ),
        ]
      : [],
    h('h2', {}, 'Outputs'),
    h(
      'table',
      { id: 'outputs' },
      h('tr', {}, h('th', {}, 'name'), h('th', {}, 'path')),
      (b.outputs ?? []).map((o) => h('tr', {}, h('td', {}, o.name), h('td', { class: 'mono' }, o.path))),
    ),
    h('h2', {}, 'Input derivations'),
    (b.inputDerivations ?? []).length
      ? h('table', { id: 'inputs' }, b.inputDerivations.map((p) => h('tr', {}, h('td', { class: 'mono' }, p))))
      : h('p', { class: 'muted' }, 'none'),
    h('h2', {}, 'Attempts'),
    attempts.length
      ? h(
          'table',
          { id: 'attempts' },
          h('tr', {}, ['#', 'agent', 'allocated', 'started', 'ended', 'outcome', 'message', 'log', 'trace id'].map((t) => h('th', {}, t))),
          attempts.map((a) =>
            h(
              'tr',
              {},
              h('td', {}, a.attempt),
              h('td', { class: 'mono', title: a.agentId }, shortId(a.agentId)),
              h('td', {}, when(a.allocatedAt)),
              h('td', {}, when(a.startedAt)),
              h('td', {}, when(a.endedAt)),
              h('td', { class: a.outcome ? `outcome-${a.outcome}` : 'muted' }, a.outcome || (a.startedAt ? 'running' : 'not started yet')),
              h('td', {}, a.message ?? ''),
              h('td', {}, bytes(a.logSize)),
              h('td', { class: 'mono' }, a.traceId),
            ),
          ),
        )
      : h('p', { class: 'muted' }, 'not handed to an agent yet'),
  ];
  // The binary cache serves the latest log of a derivation, once an attempt uploaded one.
  const logPath = `/log/${b.derivationPath.replace(/^.*\//, '')}`;
  const hasLog = attempts.some((a) => Number(a.logSize ?? 0) > 0);
  const log = hasLog ? await fetch(logPath).then((r) => (r.ok ? r.text() : '')) : '';
  parts.push(h('h2', {}, 'Log ', h('a', { href: logPath }, 'raw')));
  parts.push(log ? h('pre', { class: 'log', id: 'log' }, log.length > 65536 ? `…\n${log.slice(-65536)}` : log) : h('p', { class: 'muted' }, 'no log yet'));
  return parts;
}

// ---- token and refresh ------------------------------------------------------------------

function askForToken(message) {
  forgetButton.hidden = true;
  statusLine.textContent = 'a token is needed';
  const input = h('input', { name: 'token', autocomplete: 'off', placeholder: 'dashboard-token or admin-token' });
  main.replaceChildren(
    h(
      'form',
      {
        class: 'token',
        onsubmit: (e) => {
          e.preventDefault();
          localStorage.setItem(TOKEN_KEY, input.value.trim());
          void refresh();
        },
      },
      h('p', {}, 'Paste the read-only token from the coordinator\'s data directory (', h('span', { class: 'mono' }, 'dashboard-token'), '), or open the link the coordinator printed at start.'),
      message ? h('p', { class: 'error' }, message) : undefined,
      input,
      h('button', { type: 'submit' }, 'show the farm'),
    ),
  );
}

let timer;
async function refresh() {
  clearTimeout(timer);
  if (!token()) return askForToken();
  const route = location.hash.replace(/^#/, '');
  const buildId = /^\/build\/([0-9a-fA-F-]{36})$/.exec(route)?.[1];
  try {
    const content = buildId ? await buildPage(buildId) : await overview();
    main.replaceChildren(...content.flat().filter(Boolean));
    statusLine.textContent = `updated ${new Date().toLocaleTimeString()}`;
    statusLine.className = 'muted';
    forgetButton.hidden = false;
  } catch (err) {
    if (err instanceof ApiError && (err.code === 'unauthenticated' || err.code === 'permission_denied')) {
      localStorage.removeItem(TOKEN_KEY);
      return askForToken(`the coordinator refused the token: ${err.message}`);
    }
    statusLine.textContent = `could not refresh: ${err.message}`;
    statusLine.className = 'error';
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

// A token in the link is taken once and removed from the address bar (and history).
const fromLink = /(?:^#|&)token=([^&]+)/.exec(location.hash);
if (fromLink) {
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(fromLink[1]));
  history.replaceState(null, '', `${location.pathname}#/`);
}
forgetButton.addEventListener('click', () => {
  localStorage.removeItem(TOKEN_KEY);
  void refresh();
});
window.addEventListener('hashchange', () => void refresh());
void refresh();
