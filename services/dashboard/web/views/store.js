// The app store, offline: the box's own store copy (`cubeos store add`), searched
// and filtered by category; an app's preview (deployable, or refused with the
// reasons), the images the box lacks, env fields, and install with progress. Also
// install from a pasted compose file.

import { dialog, errorText, field, fill, h, icon, progressBar } from '../ui.js';
import { reportTable } from './apps.js';

const IMAGE_HELP =
  'This box is offline: copy the image onto it (docker save on a machine that has it, then `cubeos image load <file>` here).';

/** A store app's icon: the store copy's, or a placeholder. */
function storeIcon(app, size) {
  return icon(app.icon ? `/icons/store/${encodeURIComponent(app.id)}` : null, app.title || app.id, size);
}

/** The preview's panels: images, refusals, ports, env fields and the report. */
function previewPanels(p, envInputs) {
  const missing = p.images.filter((i) => !i.present).map((i) => i.image);
  return [
    missing.length
      ? h('div', { class: 'notice warn', role: 'note' }, h('strong', {}, 'Image not on this box: '), missing.join(', '), h('p', {}, p.image_hint || IMAGE_HELP))
      : h('p', { class: 'ok' }, 'Every image is on the box.'),
    p.refusals.length ? h('div', { class: 'notice error' }, h('strong', {}, 'Refused: '), p.refusals.join('; ')) : null,
    p.ports.length
      ? h('p', {}, 'Ports: ', p.ports.map((x) => `${x.service} ${x.target}/${x.protocol}${x.published ? ` (asks for ${x.published})` : ''}`).join(', '))
      : null,
    p.env.length
      ? h(
          'fieldset',
          {},
          h('legend', {}, 'Settings'),
          p.env.map((e) => {
            const input = h('input', { name: e.name, value: e.default });
            envInputs.set(e.name, input);
            return field(e.name, input, e.description);
          }),
        )
      : null,
    h('details', {}, h('summary', {}, `Compatibility report (${p.report.length} rows)`), reportTable(p.report)),
  ];
}

/** The env values a person changed from the file's. */
function changedEnv(p, envInputs) {
  const env = {};
  for (const e of p.env) {
    const input = envInputs.get(e.name);
    if (input && input.value !== e.default) env[e.name] = input.value;
  }
  return env;
}

/** Installs and follows the job's progress into `where` until it ends. */
async function install(ctx, args, name, where) {
  const { box } = ctx;
  const bar = h('div', { class: 'install-progress' }, progressBar({ step: 0, of: 1, name: 'starting', status: 'running', message: '' }, `Installing ${name}`));
  fill(where, bar);
  let job;
  const ended = new Promise((resolve) => {
    const show = (progress) => {
      fill(bar, progressBar(progress, `Installing ${name}`));
      if (progress.status === 'done' || progress.status === 'failed') {
        box.removeEventListener('event', onEvent);
        box.removeEventListener('status', onStatus);
        resolve(progress);
      }
    };
    const onEvent = (e) => {
      if (e.detail.topic !== `cubeos/events/apps/${name}/progress` || (job && e.detail.value.job !== job)) return;
      show(e.detail.value);
    };
    // Events are not kept: after a reconnect, ask how far the job got.
    const onStatus = async (e) => {
      if (e.detail !== 'online' || !job) return;
      try {
        show(await box.request('orchestrator', 'job.get', { job }));
      } catch (err) {
        show({ job, step: 0, of: 1, name: 'install', status: 'failed', message: `the box lost track of it (${errorText(err)}); see the app's card` });
      }
    };
    box.addEventListener('event', onEvent);
    box.addEventListener('status', onStatus);
  });
  try {
    job = (await box.request('orchestrator', 'install', { ...args, name })).job;
  } catch (e) {
    fill(where, h('div', { class: 'notice error', role: 'alert' }, `Install failed: ${errorText(e)}`));
    return false;
  }
  const last = await ended;
  if (last.status === 'failed') {
    fill(where, h('div', { class: 'notice error', role: 'alert' }, `Install failed at ${last.name}: ${last.message}`));
    return false;
  }
  ctx.toast(`${name} installed`);
  return true;
}

/** The dialog of one store app: preview, settings, install. */
async function openApp(ctx, app) {
  const { box } = ctx;
  const body = h('div', {}, h('p', {}, 'Loading…'));
  const envInputs = new Map();
  let preview = null;
  const status = h('div', { 'aria-live': 'polite' });
  const load = (async () => {
    try {
      const [entry, p] = await Promise.all([
        box.request('orchestrator', 'store.get', { id: app.id }),
        box.request('orchestrator', 'preview', { store: app.id }),
      ]);
      preview = p;
      fill(
        body,
        h('div', { class: 'card-head' }, storeIcon(app, 56), h('div', {}, h('p', { class: 'tagline' }, entry.tagline), h('span', { class: 'chip' }, entry.category || 'other'))),
        h('p', { class: 'description' }, entry.description || entry.tagline),
        previewPanels(p, envInputs),
        status,
      );
    } catch (e) {
      fill(body, h('p', { class: 'error' }, errorText(e)));
    }
  })();
  const actions = [{ label: 'Close' }];
  if (ctx.can('admin')) {
    actions.push({
      label: 'Install',
      kind: 'primary',
      value: async () => {
        await load;
        if (!preview) return undefined;
        const ok = await install(ctx, { store: app.id, env: changedEnv(preview, envInputs) }, preview.name, status);
        if (ok) {
          location.hash = '#/apps';
          return true;
        }
        return undefined;
      },
    });
  }
  await dialog(app.title, body, actions);
}

function storeCard(ctx, app) {
  const missing = app.missing_images.length > 0;
  return h(
    'article',
    { class: 'card store-card', dataset: { store: app.id, missing: missing ? 'true' : 'false' } },
    h(
      'div',
      { class: 'card-head' },
      storeIcon(app, 40),
      h('div', {}, h('h2', {}, app.title), h('span', { class: 'chip' }, app.category || 'other')),
    ),
    h('p', { class: 'tagline' }, app.tagline),
    missing ? h('p', { class: 'chip warn' }, 'image not on this box') : null,
    app.refusals.length ? h('p', { class: 'chip failing' }, 'needs force') : null,
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => openApp(ctx, app), 'aria-label': `Details of ${app.title}` }, 'Details')),
  );
}

/** Install from a pasted compose file. */
function pasteSection(ctx) {
  const { box } = ctx;
  const text = h('textarea', { id: 'compose-text', rows: '10', spellcheck: 'false', placeholder: 'services:\n  web:\n    image: …' });
  const name = h('input', { id: 'compose-name', pattern: '[a-z0-9][a-z0-9\\-]{0,62}', placeholder: 'from the file' });
  const out = h('div', { 'aria-live': 'polite' });
  const envInputs = new Map();
  let preview = null;
  const doPreview = async () => {
    envInputs.clear();
    preview = null;
    try {
      preview = await box.request('orchestrator', 'preview', { compose: text.value, name: name.value || undefined });
      fill(out, h('h3', {}, `${preview.title} (${preview.name})`), previewPanels(preview, envInputs), installButton);
    } catch (e) {
      fill(out, h('div', { class: 'notice error', role: 'alert' }, errorText(e)));
    }
  };
  const installButton = h(
    'button',
    {
      type: 'button',
      class: 'primary',
      onclick: async () => {
        if (!preview) return;
        const where = h('div');
        out.append(where);
        if (await install(ctx, { compose: text.value, env: changedEnv(preview, envInputs) }, preview.name, where)) location.hash = '#/apps';
      },
    },
    'Install',
  );
  return h(
    'section',
    { 'aria-labelledby': 'paste-h', class: 'paste' },
    h('h2', { id: 'paste-h' }, 'Install from a compose file'),
    field('Compose file', text),
    field('App name', name, 'Lowercase letters, digits and dashes; empty: the file’s own.'),
    h('button', { type: 'button', onclick: doPreview }, 'Preview'),
    out,
  );
}

/** `#/store`. */
export function show(ctx) {
  const { box, main } = ctx;
  const search = h('input', { type: 'search', id: 'store-search', placeholder: 'Search apps', 'aria-label': 'Search apps' });
  const category = h('select', { id: 'store-category', 'aria-label': 'Category' }, h('option', { value: '' }, 'All categories'));
  const grid = h('div', { class: 'grid', id: 'store-grid', 'aria-live': 'polite' });
  const summary = h('p', { class: 'summary' });
  fill(
    main,
    h('h1', {}, 'App store'),
    h('div', { class: 'toolbar' }, search, category),
    summary,
    grid,
    ctx.can('admin') ? pasteSection(ctx) : null,
  );
  let seq = 0;
  let timer = null;
  const load = async () => {
    const mine = ++seq;
    try {
      const listing = await box.request('orchestrator', 'store.list', {
        query: search.value.trim() || undefined,
        category: category.value || undefined,
      });
      if (mine !== seq) return;
      if (category.options.length === 1) {
        for (const c of listing.categories) category.append(h('option', { value: c }, c));
      }
      summary.textContent = listing.total
        ? `${listing.apps.length} of ${listing.total} apps`
        : 'The store is empty: import a copy of an app store with `cubeos store add <folder or archive>` on the box.';
      fill(grid, listing.apps.map((a) => storeCard(ctx, a)));
    } catch (e) {
      summary.textContent = `The store is unavailable: ${errorText(e)}`;
    }
  };
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(load, 200);
  });
  category.addEventListener('change', load);
  const whenOnline = () => {
    if (box.status === 'online') load();
    else box.addEventListener('status', whenOnline, { once: true });
  };
  whenOnline();
  return {
    stop() {
      clearTimeout(timer);
      box.removeEventListener('status', whenOnline);
    },
  };
}
