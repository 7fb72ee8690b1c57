// A build's page: its fields, why it waits, the builds of its inputs and of its
// dependants (links both ways), its attempts and the tail of its log. What is heavy is
// asked for only when it may have changed: the relations every 30 s, the log when an
// attempt's log size changes, the build itself less often once it has ended.
import { call, every } from './api.js';
import { buildLink, bytes, drvName, folded, h, listHref, shortId, stateCell, stateName, tagLink, tail, when } from './dom.js';

const LOG_TAIL_LINES = 200;
const MESSAGE_TAIL_LINES = 12;
const FINISHED = new Set(['succeeded', 'failed', 'canceled']);
const relationsOf = every(30_000, 'GetBuildRelations');
const agentsList = every(30_000, 'ListAgents');

// The last log fetched, by what it depends on (the derivation and its attempts' log sizes).
let log = { key: '', text: '' };
// Which logs are shown whole (by derivation path).
const wholeLogs = new Set();

/** How long to wait before redrawing this page: an ended build changes only when retried. */
export const buildRefreshMs = (b) => (b && FINISHED.has(stateName(b.state)) ? 15_000 : 3_000);

export async function buildPage(id) {
  const [{ build: b }, relations, agents] = await Promise.all([call('GetBuild', { id }), relationsOf({ id }), agentsList()]);
  const names = new Map((agents.agents ?? []).map((a) => [a.id, a.name]));
  const attempts = b.attempts ?? [];
  const logPath = `/log/${b.derivationPath.replace(/^.*\//, '')}`;
  const logKey = `${b.derivationPath} ${attempts.map((a) => a.logSize ?? 0).join(',')}`;
  if (log.key !== logKey) {
    const hasLog = attempts.some((a) => Number(a.logSize ?? 0) > 0);
    log = { key: logKey, text: hasLog ? await fetch(logPath).then((r) => (r.ok ? r.text() : '')) : '' };
  }
  return {
    build: b,
    sections: [
      { key: 'fields', data: { b: { ...b, attempts: undefined }, names: [...names], trace: attempts[attempts.length - 1]?.traceId }, render: (d) => fieldsSection(d.b, new Map(d.names), d.trace) },
      { key: 'wait', data: b.waitReason ?? null, render: waitSection },
      { key: 'outputs', data: b.outputs ?? [], render: outputsSection },
      { key: 'relations', data: relations, render: relationsSection },
      { key: 'attempts', data: { attempts, names: [...names] }, render: (d) => attemptsSection(d.attempts, new Map(d.names)) },
      { key: 'log', data: { key: log.key, whole: wholeLogs.has(b.derivationPath) }, render: () => logSection(b.derivationPath, logPath, log.text) },
    ],
  };
}

const field = (label, value) => [h('dt', {}, label), h('dd', {}, value)];
const agentName = (names, id) => (id ? h('span', { title: id }, names.get(id) || shortId(id)) : h('span', { class: 'muted' }, '—'));

function fieldsSection(b, names, traceId) {
  return [
    h('h2', {}, 'Build ', h('span', { class: 'mono' }, b.id)),
    h(
      'dl',
      { class: 'fields', id: 'build-fields' },
      field('derivation', h('span', { class: 'mono' }, b.derivationPath)),
      field('state', stateCell(b.state)),
      field('system', h('a', { href: listHref({ system: b.system }) }, b.system)),
      field('priority', `${b.priority ?? 0} (derived ${b.derivedPriority ?? 0})`),
      field('agent', agentName(names, b.agentId)),
      field('tags', (b.tags ?? []).length ? h('span', { id: 'build-tags', class: 'tags' }, folded('build-tags-more', b.tags, 8, (ts) => ts.map(tagLink), 'more tags')) : '—'),
      field('waiting for inputs', String(b.waitingInputs ?? 0)),
      field('required features', (b.requiredFeatures ?? []).join(' ') || '—'),
      ...(b.failureReason
        ? [
            field(
              'failed because',
              h('span', {}, `${b.failureReason}${b.failedInput ? `: input ${b.failedInput}` : ''}`, b.failedInputBuildId ? [' (', buildLink({ id: b.failedInputBuildId }, `build ${shortId(b.failedInputBuildId)}`), ' failed)'] : []),
            ),
          ]
        : []),
      field('submitted', when(b.createdAt)),
      field('updated', when(b.updatedAt)),
      field('ended', when(b.endedAt)),
      field('trace id (latest attempt)', h('span', { class: 'mono', id: 'trace-id' }, traceId ?? '—')),
    ),
  ];
}

function waitSection(w) {
  if (!w) return [];
  const detail = [];
  if (w.unmatchedSystem) detail.push(field('no agent builds for', w.unmatchedSystem));
  if ((w.unmatchedTags ?? []).length) detail.push(field('no agent offers the tags', w.unmatchedTags.map((t) => `${t.key}=${t.value}`).join(' ')));
  if ((w.unmatchedFeatures ?? []).length) detail.push(field('no agent offers the features', w.unmatchedFeatures.join(' ')));
  if (w.notBefore) detail.push(field('not before', when(w.notBefore)));
  if (w.matchingAgents) detail.push(field('agents that could take it', String(w.matchingAgents)));
  return [
    h('h2', {}, 'Why it waits'),
    h('dl', { class: 'fields', id: 'wait' }, field('reason', h('span', { id: 'wait-reason', 'data-kind': w.kind }, w.text)), detail),
    (w.missingInputs ?? []).length
      ? [
          h('h3', {}, `Missing inputs (${w.missingInputCount ?? w.missingInputs.length})`),
          h(
            'table',
            { id: 'missing-inputs' },
            h('tr', {}, h('th', {}, 'path'), h('th', {}, 'made by'), h('th', {}, 'upstream asked')),
            folded('missing-more', w.missingInputs, 20, (ms) =>
              ms.map((m) => h('tr', {}, h('td', { class: 'mono' }, m.path), h('td', {}, m.buildId ? buildLink({ id: m.buildId }) : 'no build'), h('td', {}, m.upstreamAsked ? 'yes' : 'no'))),
              'more missing inputs',
            ),
          ),
        ]
      : [],
  ];
}

function outputsSection(outputs) {
  return [
    h('h2', {}, 'Outputs'),
    h('table', { id: 'outputs' }, h('tr', {}, h('th', {}, 'name'), h('th', {}, 'path')), outputs.map((o) => h('tr', {}, h('td', {}, o.name), h('td', { class: 'mono' }, o.path)))),
  ];
}

/** A derivation next to this one: a link to its latest build, or to the list of its builds when it has none. */
function relatedRow(r) {
  const name = drvName(r.derivationPath);
  return h(
    'tr',
    { 'data-derivation': r.derivationPath },
    h('td', { title: r.derivationPath }, r.buildId ? h('a', { href: `#/build/${r.buildId}`, class: 'related' }, name) : name),
    h('td', {}, r.buildId ? stateCell(r.state) : h('span', { class: 'muted' }, 'no build')),
    h('td', { class: 'mono muted' }, r.derivationPath),
  );
}

function relatedTable(id, rows, what) {
  if (!rows.length) return h('p', { class: 'muted', id }, 'none');
  // A table cannot hold a <details>; the rows past the first ones go in a second table inside it.
  const head = () => h('tr', {}, h('th', {}, 'derivation (latest build)'), h('th', {}, 'state'), h('th', {}, 'path'));
  const first = rows.slice(0, 20);
  const rest = rows.slice(20);
  return h(
    'div',
    { id },
    h('table', {}, head(), first.map(relatedRow)),
    rest.length ? folded(`${id}-more`, rest, 0, (rs) => (rs.length ? h('table', {}, rs.map(relatedRow)) : []), `more ${what}`) : [],
  );
}

function relationsSection(r) {
  const inputs = r.inputs ?? [];
  const dependants = r.dependants ?? [];
  const more = (r.dependantCount ?? 0) - dependants.length;
  return [
    h('h2', {}, `Input derivations (${inputs.length})`),
    relatedTable('inputs', inputs, 'inputs'),
    h('h2', {}, `Dependants (${r.dependantCount ?? 0})`),
    relatedTable('dependants', dependants, 'dependants'),
    more > 0 ? h('p', { class: 'muted' }, `and ${more} more not listed`) : undefined,
  ];
}

/** An attempt's message: short ones inline, long ones as a monospace tail with the whole behind a fold. */
function message(a) {
  const text = a.message ?? '';
  if (!text.includes('\n') && text.length <= 160) return text;
  const t = tail(text, MESSAGE_TAIL_LINES);
  return [
    h('pre', { class: 'message', 'data-scroll-end': true }, t.cut ? `… ${t.cut} lines above\n${t.text}` : t.text),
    t.cut ? h('details', { 'data-fold': `message-${a.attempt}` }, h('summary', {}, 'whole message'), h('pre', { class: 'message' }, text)) : undefined,
  ];
}

function attemptsSection(attempts, names) {
  return [
    h('h2', {}, 'Attempts'),
    attempts.length
      ? h(
          'table',
          { id: 'attempts' },
          h('tr', {}, ['#', 'agent', 'allocated', 'started', 'ended', 'outcome', 'message', 'log', 'trace id'].map((t) => h('th', {}, t))),
          attempts.map((a) =>
            h(
              'tr',
              { 'data-attempt': a.attempt },
              h('td', {}, a.attempt),
              h('td', {}, agentName(names, a.agentId)),
              h('td', {}, when(a.allocatedAt)),
              h('td', {}, when(a.startedAt)),
              h('td', {}, when(a.endedAt)),
              h('td', { class: a.outcome ? `outcome-${a.outcome}` : 'muted' }, a.outcome || (a.startedAt ? 'running' : 'not started yet')),
              h('td', { class: 'message-cell' }, message(a)),
              h('td', {}, bytes(a.logSize)),
              h('td', { class: 'mono' }, a.traceId),
            ),
          ),
        )
      : h('p', { class: 'muted' }, 'not handed to an agent yet'),
  ];
}

function logSection(drv, logPath, text) {
  if (!text) return [h('h2', {}, 'Log'), h('p', { class: 'muted', id: 'log-none' }, 'no log yet')];
  const whole = wholeLogs.has(drv);
  const t = tail(text, LOG_TAIL_LINES);
  const toggle = h(
    'button',
    {
      type: 'button',
      id: 'log-toggle',
      onclick: () => {
        if (whole) wholeLogs.delete(drv);
        else wholeLogs.add(drv);
        window.dispatchEvent(new Event('kiln-redraw'));
      },
    },
    whole ? `show the last ${LOG_TAIL_LINES} lines` : `show all ${t.total} lines`,
  );
  return [
    h('h2', {}, 'Log ', h('a', { href: logPath, id: 'log-raw' }, 'raw'), ' ', t.cut ? toggle : undefined),
    h('pre', { class: 'log', id: 'log', 'data-scroll-end': true, 'data-lines': whole ? t.total : t.total - t.cut }, whole || !t.cut ? text : `… ${t.cut} lines above\n${t.text}`),
  ];
}
