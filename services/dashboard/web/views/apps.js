// Apps: a card per app from the retained state (`cubeos/state/apps/<name>` and its
// `/status`), kept live; lifecycle commands with their job's progress; and an
// app's page with its logs and compatibility report.

import { confirm, errorText, fill, h, icon, progressBar } from '../ui.js';

const APP_TOPIC = /^cubeos\/state\/apps\/([^/]+)$/;
const STATUS_TOPIC = /^cubeos\/state\/apps\/([^/]+)\/status$/;
const PROGRESS_TOPIC = /^cubeos\/events\/apps\/([^/]+)\/progress$/;

/** The latest progress event per app, kept across views. */
const jobs = new Map();

function domain(box) {
  const system = box.get('cubeos/state/system');
  return (system && system.domain) || 'cubeos.cube';
}

/** The icon of an installed app: its own when the box has it. */
function appIcon(record, size) {
  const own = record.icon_url && record.icon_url.startsWith('/icons/') ? record.icon_url : null;
  return icon(own, record.display_name || record.name, size);
}

/** What a card shows of an app's health. */
function health(status) {
  if (!status) return { text: 'unknown', kind: 'unknown' };
  return { text: status.health.replace('_', ' '), kind: status.health };
}

/** The links to an app: its name through the proxy, and its ports on the box. */
function links(box, record) {
  const names = record.fqdns && record.fqdns.length ? record.fqdns.map((f) => f.fqdn) : [`${record.name}.${domain(box)}`];
  const out = names.map((n) => h('a', { href: `http://${n}/`, target: '_blank', rel: 'noopener' }, n));
  for (const p of record.ports || []) {
    if (p.protocol !== 'tcp') {
      out.push(h('span', { class: 'port' }, `${p.port}/${p.protocol}`));
      continue;
    }
    out.push(
      h('a', { href: `http://${location.hostname}:${p.port}/`, target: '_blank', rel: 'noopener', class: 'port' }, `${location.hostname}:${p.port}`),
    );
  }
  return out;
}

/** Runs a lifecycle command, reporting failure on the card. */
async function lifecycle(ctx, action, name, args = {}) {
  try {
    const reply = await ctx.box.request('orchestrator', action, { name, ...args });
    if (action === 'remove') ctx.toast(`${name} removed${reply.data_kept ? ' (its data kept)' : ''}`);
    return reply;
  } catch (e) {
    ctx.toast(`${action} ${name}: ${errorText(e)}`, 'error');
    return null;
  }
}

async function askRemove(ctx, name) {
  const keep = h('input', { type: 'checkbox', id: `keep-${name}` });
  const extra = h('div', { class: 'check' }, keep, h('label', { for: keep.id }, 'Keep its data on the box'));
  if (await confirm(`Remove ${name}?`, 'Its services are removed from the box.', 'Remove', extra)) {
    return lifecycle(ctx, 'remove', name, { keep_data: keep.checked });
  }
  return null;
}

function actions(ctx, name, status) {
  const buttons = [];
  const running = status && status.running;
  if (ctx.can('user')) {
    if (!running) buttons.push(h('button', { type: 'button', onclick: () => lifecycle(ctx, 'start', name) }, 'Start'));
    if (running) buttons.push(h('button', { type: 'button', onclick: () => lifecycle(ctx, 'stop', name) }, 'Stop'));
    buttons.push(h('button', { type: 'button', onclick: () => lifecycle(ctx, 'restart', name) }, 'Restart'));
  }
  if (ctx.can('admin')) buttons.push(h('button', { type: 'button', class: 'danger', onclick: () => askRemove(ctx, name) }, 'Remove'));
  return buttons;
}

function card(ctx, name) {
  const { box } = ctx;
  const record = box.get(`cubeos/state/apps/${name}`);
  const status = box.get(`cubeos/state/apps/${name}/status`);
  const hl = health(status);
  const title = record.display_name || name;
  const job = jobs.get(name);
  return h(
    'article',
    { class: 'card', dataset: { app: name, health: hl.kind } },
    h(
      'div',
      { class: 'card-head' },
      appIcon(record, 40),
      h('div', {}, h('h2', {}, h('a', { href: `#/app/${encodeURIComponent(name)}` }, title)), h('span', { class: `chip ${hl.kind}` }, hl.text)),
    ),
    h(
      'dl',
      {},
      h('dt', {}, 'Replicas'),
      h('dd', {}, status ? status.replicas || '–' : '–'),
      status && status.error ? [h('dt', {}, 'Error'), h('dd', { class: 'error' }, status.error)] : null,
    ),
    h('div', { class: 'links' }, links(box, record)),
    job && job.status !== 'done' ? progressBar(job, `${name} progress`) : null,
    h('div', { class: 'actions' }, actions(ctx, name, status)),
  );
}

/** `#/apps`: every app's card. */
export function show(ctx) {
  const { box, main } = ctx;
  const grid = h('div', { class: 'grid', id: 'app-grid' });
  const empty = h('p', { class: 'empty' }, 'No apps yet. Install one from the ', h('a', { href: '#/store' }, 'app store'), '.');
  fill(main, h('h1', {}, 'Apps'), grid);
  const cards = new Map();
  const dirty = new Set();
  let scheduled = false;
  const names = () => box.all('cubeos/state/apps/+').map(([t]) => t.match(APP_TOPIC)[1]).sort();

  const render = () => {
    scheduled = false;
    const wanted = names();
    for (const [name, el] of cards) {
      if (!wanted.includes(name)) {
        el.remove();
        cards.delete(name);
      }
    }
    let before = null;
    for (const name of wanted.slice().reverse()) {
      let el = cards.get(name);
      if (!el || dirty.has(name)) {
        const fresh = card(ctx, name);
        if (el) el.replaceWith(fresh);
        el = fresh;
        cards.set(name, el);
      }
      if (el.nextSibling !== before || el.parentNode !== grid) grid.insertBefore(el, before);
      before = el;
    }
    dirty.clear();
    if (!wanted.length && !empty.isConnected) grid.before(empty);
    if (wanted.length) empty.remove();
    grid.dataset.count = String(wanted.length);
  };
  // Retained state arrives as a burst of messages after every (re)connection: the
  // grid is drawn once the burst pauses (or every 250 ms while it lasts), not once
  // per frame, since each draw lays the whole grid out again.
  let quiet = null;
  let first = 0;
  const touch = (name) => {
    if (name) dirty.add(name);
    else for (const n of cards.keys()) dirty.add(n);
    const now = performance.now();
    if (!scheduled) {
      scheduled = true;
      first = now;
    }
    clearTimeout(quiet);
    const wait = Math.max(0, Math.min(30, first + 250 - now));
    quiet = setTimeout(() => requestAnimationFrame(render), wait);
  };
  const onState = (e) => {
    const topic = e.detail && e.detail.topic;
    if (!topic) return touch(null);
    const m = topic.match(APP_TOPIC) || topic.match(STATUS_TOPIC);
    if (m) touch(m[1]);
    else if (topic === 'cubeos/state/system') touch(null);
  };
  const onEvent = (e) => {
    const m = e.detail.topic.match(PROGRESS_TOPIC);
    if (!m) return;
    jobs.set(m[1], e.detail.value);
    touch(m[1]);
  };
  box.addEventListener('state', onState);
  box.addEventListener('event', onEvent);
  render();
  return {
    stop() {
      clearTimeout(quiet);
      box.removeEventListener('state', onState);
      box.removeEventListener('event', onEvent);
    },
  };
}

/** The compatibility report as a table. */
export function reportTable(rows) {
  if (!rows.length) return h('p', {}, 'Every compose key is taken as it is.');
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Service'), h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col' }, 'Outcome'), h('th', { scope: 'col' }, 'Why'))),
      h(
        'tbody',
        {},
        rows.map((r) => h('tr', { class: r.outcome }, h('td', {}, r.service || '(file)'), h('td', {}, r.key), h('td', {}, r.outcome), h('td', {}, r.reason))),
      ),
    ),
  );
}

/** `#/app/<name>`: one app, its logs and its compatibility report. */
export function detail(ctx, name) {
  const { box, main } = ctx;
  const head = h('div', { class: 'detail-head' });
  const lines = h('pre', { class: 'logs', tabindex: '0', 'aria-label': `Logs of ${name}` });
  const tail = h('select', { id: 'log-tail' }, [100, 500, 2000].map((n) => h('option', { value: String(n) }, `last ${n} lines`)));
  const follow = h('input', { type: 'checkbox', id: 'log-follow' });
  const search = h('input', { type: 'search', id: 'log-search', placeholder: 'Search the logs' });
  const report = h('div', {}, h('p', {}, 'Loading…'));
  let all = [];
  let timer = null;

  const showLines = () => {
    const q = search.value.trim().toLowerCase();
    const shown = q ? all.filter((l) => l.toLowerCase().includes(q)) : all;
    lines.textContent = shown.length ? shown.join('\n') : q ? 'No line matches.' : 'No log lines.';
    if (follow.checked) lines.scrollTop = lines.scrollHeight;
  };
  const load = async () => {
    try {
      const reply = await box.request('orchestrator', 'logs', { name, tail: Number(tail.value) });
      all = reply.lines;
      showLines();
    } catch (e) {
      lines.textContent = `Logs unavailable: ${errorText(e)}`;
    }
  };
  const schedule = () => {
    clearInterval(timer);
    if (follow.checked) timer = setInterval(load, 2000);
  };
  tail.addEventListener('change', load);
  follow.addEventListener('change', () => {
    schedule();
    load();
  });
  search.addEventListener('input', showLines);

  const renderHead = () => {
    const record = box.get(`cubeos/state/apps/${name}`);
    if (!record) {
      fill(head, h('h1', {}, name), h('p', {}, 'This app is not installed (or the box is still sending its state).'));
      return;
    }
    const status = box.get(`cubeos/state/apps/${name}/status`);
    const job = jobs.get(name);
    const hl = health(status);
    fill(
      head,
      h('p', {}, h('a', { href: '#/apps' }, '← All apps')),
      h('div', { class: 'card-head' }, appIcon(record, 56), h('div', {}, h('h1', {}, record.display_name || name), h('span', { class: `chip ${hl.kind}` }, hl.text))),
      record.description ? h('p', {}, record.description) : null,
      h('div', { class: 'links' }, links(box, record)),
      job && job.status !== 'done' ? progressBar(job, `${name} progress`) : null,
      h('div', { class: 'actions' }, actions(ctx, name, status)),
    );
  };
  fill(
    main,
    head,
    h(
      'section',
      { 'aria-labelledby': 'logs-h' },
      h('h2', { id: 'logs-h' }, 'Logs'),
      h('div', { class: 'toolbar' }, tail, h('span', { class: 'check' }, follow, h('label', { for: 'log-follow' }, 'Follow')), search, h('button', { type: 'button', onclick: load }, 'Refresh')),
      lines,
    ),
    h('section', { 'aria-labelledby': 'compat-h' }, h('h2', { id: 'compat-h' }, 'Compatibility report'), report),
  );
  tail.setAttribute('aria-label', 'How many lines');
  search.setAttribute('aria-label', 'Search the logs');
  renderHead();
  const onState = (e) => {
    const t = e.detail && e.detail.topic;
    if (!t || t.startsWith(`cubeos/state/apps/${name}`)) renderHead();
  };
  const onEvent = (e) => {
    if (e.detail.topic === `cubeos/events/apps/${name}/progress`) {
      jobs.set(name, e.detail.value);
      renderHead();
    }
  };
  box.addEventListener('state', onState);
  box.addEventListener('event', onEvent);
  const loadReport = async () => {
    try {
      const p = await box.request('orchestrator', 'preview', { app: name });
      fill(report, reportTable(p.report), p.refusals.length ? h('p', { class: 'error' }, `Would be refused without force: ${p.refusals.join('; ')}`) : null);
    } catch (e) {
      fill(report, h('p', {}, `No report: ${errorText(e)}`));
    }
  };
  // The box may still be connecting when the page is opened directly.
  const whenOnline = () => {
    if (box.status === 'online') {
      load();
      loadReport();
    } else box.addEventListener('status', whenOnline, { once: true });
  };
  whenOnline();
  return {
    stop() {
      clearInterval(timer);
      box.removeEventListener('state', onState);
      box.removeEventListener('event', onEvent);
      box.removeEventListener('status', whenOnline);
    },
  };
}
