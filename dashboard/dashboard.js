// kiln's dashboard: a read-only view of the farm, fed by AdminService (api.js) and
// refreshed every few seconds. The token comes once in the link the coordinator prints
// (#token=…, the read-only dashboard token) or is pasted into the form; it is kept in
// this browser's localStorage and sent as a bearer token. Each page is a list of
// sections, and a section is redrawn only when its data changed, so that what a person
// opened (folds) or scrolled (the log) stays as it was.
import { ApiError, forgetToken, setToken, token } from './api.js';
import { buildPage, buildRefreshMs } from './build-page.js';
import { h, refreshAgo } from './dom.js';
import { overview } from './overview.js';

const REFRESH_MS = 3000;
const main = document.getElementById('main');
const statusLine = document.getElementById('status');
const forgetButton = document.getElementById('forget');

// The sections on screen: their keys in order, and the data each was drawn from.
let shown = { page: '', keys: '', data: new Map(), boxes: new Map() };

function show(page, sections) {
  const keys = sections.map((s) => s.key).join(' ');
  if (shown.page !== page || shown.keys !== keys) {
    shown = { page, keys, data: new Map(), boxes: new Map() };
    main.replaceChildren(...sections.map((s) => {
      const box = h('div', { 'data-section': s.key });
      shown.boxes.set(s.key, box);
      return box;
    }));
  }
  for (const s of sections) {
    const json = JSON.stringify(s.data);
    if (shown.data.get(s.key) === json) continue;
    shown.data.set(s.key, json);
    const box = shown.boxes.get(s.key);
    box.replaceChildren(...[s.render(s.data)].flat(Infinity).filter(Boolean));
    // A tail is read from its end: scrolled there when drawn, left where the reader put it after.
    for (const el of box.querySelectorAll('[data-scroll-end]')) el.scrollTop = el.scrollHeight;
  }
  refreshAgo(main);
}

function askForToken(message) {
  forgetButton.hidden = true;
  shown = { page: '', keys: '', data: new Map(), boxes: new Map() };
  statusLine.textContent = 'a token is needed';
  const input = h('input', { name: 'token', autocomplete: 'off', placeholder: 'dashboard-token or admin-token' });
  main.replaceChildren(
    h(
      'form',
      {
        class: 'token',
        onsubmit: (e) => {
          e.preventDefault();
          setToken(input.value.trim());
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
let running = Promise.resolve();
/** One refresh at a time: a hash change during one waits for it, then draws the new page. */
function refresh() {
  running = running.then(draw, draw);
  return running;
}

async function draw() {
  clearTimeout(timer);
  if (!token()) return askForToken();
  const route = location.hash.replace(/^#/, '');
  const buildId = /^\/build\/([0-9a-fA-F-]{36})$/.exec(route)?.[1];
  let next = REFRESH_MS;
  try {
    if (buildId) {
      const { build, sections } = await buildPage(buildId);
      show(`build ${buildId}`, sections);
      next = buildRefreshMs(build);
    } else {
      const query = route.includes('?') ? route.slice(route.indexOf('?') + 1) : '';
      show('overview', await overview(query));
    }
    statusLine.textContent = `updated ${new Date().toLocaleTimeString()}`;
    statusLine.className = 'muted';
    forgetButton.hidden = false;
  } catch (err) {
    if (err instanceof ApiError && (err.code === 'unauthenticated' || err.code === 'permission_denied')) {
      forgetToken();
      return askForToken(`the coordinator refused the token: ${err.message}`);
    }
    statusLine.textContent = `could not refresh: ${err.message}`;
    statusLine.className = 'error';
  }
  timer = setTimeout(refresh, next);
}

// A token in the link is taken once and removed from the address bar (and history).
const fromLink = /(?:^#|&)token=([^&]+)/.exec(location.hash);
if (fromLink) {
  setToken(decodeURIComponent(fromLink[1]));
  history.replaceState(null, '', `${location.pathname}#/`);
}
forgetButton.addEventListener('click', () => {
  forgetToken();
  void refresh();
});
window.addEventListener('hashchange', () => void refresh());
window.addEventListener('kiln-redraw', () => void refresh());
void refresh();
