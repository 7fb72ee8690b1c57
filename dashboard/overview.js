// The farm's page: the queue (and how much of it a connected agent could take), charts of
// the last hours, the agents, and the builds newest first, filtered and paged by a
// keyset cursor (ListBuilds' page tokens; the tokens of the pages before are kept here,
// so "newer" goes back without an offset).
import { call, every } from './api.js';
import { stackedArea, stackedBars, stepLine } from './charts.js';
import { ago, buildLink, bytes, drvName, folded, h, listHref, shortId, stateCell, stateName, tagLink, when } from './dom.js';

const PAGE_SIZE = 25;
const STATES = ['scheduled', 'allocated', 'started', 'succeeded', 'failed', 'canceled'];
/** The charts change slowly and cost the database a scan: asked for every 30 s. */
const farmHistory = every(30_000, 'GetFarmHistory');

/** The list's filter and page, from the address: #/?state=…&tag=k=v&system=…&q=…&drv=…&after=… */
export function routeFilter(query) {
  const p = new URLSearchParams(query);
  return { state: p.get('state') ?? '', tag: p.get('tag') ?? '', system: p.get('system') ?? '', q: p.get('q') ?? '', drv: p.get('drv') ?? '', after: p.get('after') ?? '' };
}

// The page tokens that led to this page, for one filter.
let paging = { key: '', before: [] };

function listRequest(f) {
  const request = { pageSize: PAGE_SIZE, newestFirst: true, withoutInputs: true, pageToken: f.after };
  if (f.state) request.states = [`BUILD_STATE_${f.state.toUpperCase()}`];
  if (f.system) request.system = f.system;
  if (f.q) request.nameContains = f.q;
  if (f.drv) request.derivationPath = f.drv;
  if (f.tag) {
    const eq = f.tag.indexOf('=');
    if (eq <= 0) throw new Error(`the tag filter ${JSON.stringify(f.tag)} is not key=value`);
    request.tags = [{ key: f.tag.slice(0, eq), value: f.tag.slice(eq + 1) }];
  }
  return request;
}

/** The overview as sections, each redrawn only when its data changed. */
export async function overview(query) {
  const f = routeFilter(query);
  const key = JSON.stringify({ ...f, after: undefined });
  if (paging.key !== key) paging = { key, before: [] };
  if (!f.after) paging.before = [];
  const [summary, agents, builds, history] = await Promise.all([call('GetQueueSummary'), call('ListAgents'), call('ListBuilds', listRequest(f)), farmHistory({ minutes: 180 })]);
  const names = new Map((agents.agents ?? []).map((a) => [a.id, a.name]));
  return [
    { key: 'queue', data: summary, render: queueSection },
    { key: 'charts', data: { history, slots: (agents.agents ?? []).map((a) => [a.id, a.connection?.maxParallelBuilds ?? 0]) }, render: (d) => chartsSection(d.history, new Map(d.slots)) },
    { key: 'agents', data: agents, render: agentsSection },
    { key: 'filter', data: { f, systems: [...new Set((summary.counts ?? []).map((c) => c.system))] }, render: (d) => filterSection(d.f, d.systems) },
    { key: 'builds', data: { builds, names: [...names], page: paging.before.length, f }, render: (d) => buildsSection(d.builds, new Map(d.names), d.f) },
  ];
}

const card = (id, n, label, extra) => h('div', { class: 'card', id }, h('div', { class: 'n' }, n), h('div', { class: 'label' }, label), extra);

function queueSection(summary) {
  const total = (state) => (summary.counts ?? []).filter((c) => c.state === state).reduce((a, c) => a + (c.count ?? 0), 0);
  const ready = summary.ready ?? [];
  const readyAll = ready.reduce((a, r) => a + (r.count ?? 0), 0);
  const matching = ready.reduce((a, r) => a + (r.matchingConnected ?? 0), 0);
  const oldest = ready.map((r) => r.oldestCreatedAt).sort()[0];
  const bySystem = new Map(ready.map((r) => [r.system, r]));
  return [
    h('h2', {}, 'Queue'),
    h(
      'section',
      { class: 'cards', id: 'queue' },
      card('card-scheduled', total('BUILD_STATE_SCHEDULED'), 'scheduled', oldest ? h('div', { class: 'label' }, `oldest ready submitted ${ago(oldest)}`) : undefined),
      card('ready-matching', matching, 'ready, an agent connected here could take'),
      card('ready-unmatched', readyAll - matching, 'ready, no connected agent offers its system, tags or features'),
      card('card-allocated', total('BUILD_STATE_ALLOCATED'), 'allocated'),
      card('card-started', total('BUILD_STATE_STARTED'), 'started'),
      card('card-agents', summary.connectedAgents ?? 0, 'agents connected'),
    ),
    (summary.counts ?? []).length
      ? h(
          'table',
          { id: 'queue-by-system' },
          h('tr', {}, ['system', 'state', 'builds', 'ready', 'an agent here could take'].map((t) => h('th', {}, t))),
          summary.counts.map((c) => {
            const r = c.state === 'BUILD_STATE_SCHEDULED' ? bySystem.get(c.system) : undefined;
            return h(
              'tr',
              {},
              h('td', {}, h('a', { href: listHref({ system: c.system, state: stateName(c.state) }) }, c.system)),
              h('td', {}, stateCell(c.state)),
              h('td', {}, c.count ?? 0),
              h('td', {}, r ? r.count ?? 0 : ''),
              h('td', {}, r ? r.matchingConnected ?? 0 : ''),
            );
          }),
        )
      : undefined,
  ];
}

function chartsSection(history, slots) {
  const depth = (history.queueDepth ?? []).map((p) => ({ t: Date.parse(p.at), values: { scheduled: p.scheduled ?? 0, allocated: p.allocated ?? 0, started: p.started ?? 0 } }));
  const t0 = depth[0]?.t ?? Date.now();
  const t1 = depth[depth.length - 1]?.t ?? t0;
  const minute = 60_000;
  const finished = (history.finished ?? []).map((m) => ({ t: Date.parse(m.minute), values: { succeeded: m.succeeded ?? 0, failed: m.failed ?? 0, canceled: m.canceled ?? 0 } }));
  const times = depth.map((p) => p.t);
  const hours = Math.round((t1 - t0) / 3_600_000);
  return [
    h('h2', {}, `The last ${hours || 'few'} hour${hours === 1 ? '' : 's'}`),
    h(
      'section',
      { class: 'charts' },
      h('figure', {}, h('figcaption', {}, 'Queue depth by state'), stackedArea('chart-queue', 'queue depth by state', depth, [
        { name: 'scheduled', cls: 's-scheduled' },
        { name: 'allocated', cls: 's-allocated' },
        { name: 'started', cls: 's-started' },
      ])),
      h('figure', {}, h('figcaption', {}, 'Builds finished per minute'), stackedBars('chart-finished', 'builds finished per minute', Math.floor(t0 / minute) * minute, Math.floor(t1 / minute) * minute, minute, finished, [
        { name: 'succeeded', cls: 's-succeeded' },
        { name: 'failed', cls: 's-failed' },
        { name: 'canceled', cls: 's-canceled' },
      ])),
    ),
    h('h3', {}, 'Builds each agent held, on average over each step (dashed: its slots, when connected here)'),
    (history.agentSlots ?? []).length
      ? h(
          'section',
          { class: 'charts', id: 'agent-slots' },
          history.agentSlots.map((a) =>
            h('figure', { 'data-agent-id': a.agentId }, h('figcaption', { title: a.agentId }, a.agentName || shortId(a.agentId)), stepLine(`chart-agent-${a.agentId}`, `builds held by ${a.agentName || a.agentId}`, times, (a.inUse ?? []).map(Number), slots.get(a.agentId) || undefined)),
          ),
        )
      : h('p', { class: 'muted', id: 'agent-slots' }, 'no agent held a build in this period'),
  ];
}

function agentsSection(agents) {
  return [
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
          { 'data-agent-id': a.id },
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
  ];
}

function filterSection(f, systems) {
  const go = (changes) => (location.hash = listHref({ ...f, after: '', ...changes }));
  const input = (name, placeholder, value) => h('input', { name, id: `filter-${name}`, placeholder, value, autocomplete: 'off', list: name === 'system' ? 'known-systems' : undefined });
  const form = h(
    'form',
    {
      class: 'filters',
      id: 'filters',
      onsubmit: (e) => {
        e.preventDefault();
        const data = new FormData(e.target);
        go({ state: data.get('state'), tag: data.get('tag').trim(), system: data.get('system').trim(), q: data.get('q').trim() });
      },
    },
    h(
      'select',
      { name: 'state', id: 'state-filter', onchange: (e) => go({ state: e.target.value }) },
      ['', ...STATES].map((s) => h('option', { value: s, selected: s === f.state }, s || 'all states')),
    ),
    input('system', 'system', f.system),
    h('datalist', { id: 'known-systems' }, systems.map((s) => h('option', { value: s }))),
    input('tag', 'tag key=value', f.tag),
    input('q', 'derivation name contains', f.q),
    h('button', { type: 'submit', id: 'filter-apply' }, 'filter'),
    Object.entries(f).some(([k, v]) => v && k !== 'after') ? h('a', { href: '#/', id: 'filter-clear' }, 'clear') : undefined,
    f.drv ? h('span', { class: 'muted' }, 'builds of ', h('span', { class: 'mono' }, drvName(f.drv))) : undefined,
  );
  return [h('h2', {}, 'Builds, newest first'), form];
}

function buildsSection(page, names, f) {
  const agentName = (id) => (id ? names.get(id) || shortId(id) : '');
  const builds = page.builds ?? [];
  const number = paging.before.length + 1;
  const pager = h(
    'nav',
    { class: 'pager' },
    h('button', { type: 'button', id: 'page-newer', disabled: !f.after, onclick: () => (location.hash = listHref({ ...f, after: paging.before.pop() ?? '' })) }, '← newer'),
    h('span', { id: 'page-number' }, `page ${number}`),
    h(
      'button',
      {
        type: 'button',
        id: 'page-older',
        disabled: !page.nextPageToken,
        onclick: () => {
          paging.before.push(f.after);
          location.hash = listHref({ ...f, after: page.nextPageToken });
        },
      },
      'older →',
    ),
  );
  return [
    builds.length
      ? h(
          'table',
          { id: 'builds' },
          h('tr', {}, ['build', 'derivation', 'system', 'state', 'priority', 'attempts', 'agent', 'tags', 'submitted', 'updated'].map((t) => h('th', {}, t))),
          builds.map((b) =>
            h(
              'tr',
              { 'data-build-id': b.id },
              h('td', {}, buildLink(b)),
              h('td', { title: b.derivationPath }, drvName(b.derivationPath)),
              h('td', {}, b.system),
              h('td', {}, stateCell(b.state)),
              h('td', {}, b.derivedPriority ?? 0),
              h('td', {}, b.attemptCount ?? 0),
              h('td', { title: b.agentId ?? '' }, agentName(b.agentId)),
              h('td', { class: 'tags' }, folded(`tags-${b.id}`, b.tags ?? [], 2, (ts) => ts.map(tagLink), 'more tags')),
              h('td', {}, when(b.createdAt)),
              h('td', {}, when(b.updatedAt)),
            ),
          ),
        )
      : h('p', { class: 'muted', id: 'builds' }, 'no builds match'),
    pager,
  ];
}
