// The dashboard's shell: sign-in (first-boot setup, login), the header with the
// connection's state, and the views by URL hash (#/apps, #/app/<name>, #/store,
// #/system). What a role may not do is not shown; the gate refuses it anyway.

import { Box, login, savedSession, setup, setupStatus } from './bus.js';
import { errorText, field, fill, h, toast } from './ui.js';
import * as apps from './views/apps.js';
import * as store from './views/store.js';
import * as system from './views/system.js';

const RANK = { readonly: 1, user: 2, admin: 3, system: 4 };

/** Whether the signed-in role may call commands that need `need`. */
export function can(box, need) {
  return (RANK[box.role] || 0) >= RANK[need];
}

const root = document.getElementById('app');
let box = null;

function signInScreen(title, intro, submitLabel, onSubmit, confirmPassword) {
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, maxlength: '64' });
  const pass = h('input', {
    name: 'password',
    type: 'password',
    autocomplete: confirmPassword ? 'new-password' : 'current-password',
    required: true,
  });
  const again = confirmPassword ? h('input', { name: 'confirm', type: 'password', autocomplete: 'new-password', required: true }) : null;
  const message = h('p', { class: 'form-error', role: 'alert', id: 'signin-error' });
  const button = h('button', { type: 'submit', class: 'primary' }, submitLabel);
  const form = h(
    'form',
    {
      class: 'signin',
      onsubmit: async (e) => {
        e.preventDefault();
        message.textContent = '';
        if (again && again.value !== pass.value) {
          message.textContent = 'The two passwords differ.';
          return;
        }
        button.disabled = true;
        try {
          await onSubmit(user.value.trim(), pass.value);
        } catch (err) {
          message.textContent = signInError(err);
          pass.value = '';
          pass.focus();
        } finally {
          button.disabled = false;
        }
      },
    },
    h('h1', {}, title),
    h('p', {}, intro),
    field('Username', user),
    field('Password', pass),
    again ? field('Password again', again) : null,
    message,
    button,
  );
  fill(root, h('main', { class: 'center', id: 'main' }, form));
  user.focus();
}

function signInError(err) {
  if (err.code === 'unavailable' || err.code === 'timeout') return `The box is not answering (${err.message}). Try again in a moment.`;
  if (/locked out/.test(err.message)) return `Locked out: ${err.message.replace(/^locked out,?\s*/, '')}.`;
  if (err.code === 'unauthorized') return 'Wrong username or password.';
  return errorText(err);
}

async function start() {
  const session = savedSession();
  if (session) return enter(session);
  let state;
  try {
    state = await setupStatus();
  } catch (err) {
    fill(
      root,
      h(
        'main',
        { class: 'center', id: 'main' },
        h('h1', {}, 'CubeOS'),
        h('p', { role: 'alert' }, `The box is not answering (${err.message}). Retrying…`),
      ),
    );
    setTimeout(start, 3000);
    return;
  }
  if (!state.setup_complete) {
    signInScreen(
      'Welcome to CubeOS',
      'Create the first administrator of this box.',
      'Create administrator',
      async (u, p) => enter(await setup(u, p)),
      true,
    );
  } else {
    signInScreen('Sign in to CubeOS', 'Sign in with your account on this box.', 'Sign in', async (u, p) =>
      enter(await login(u, p)),
    );
  }
}

const VIEWS = [
  { hash: '#/apps', label: 'Apps', view: apps },
  { hash: '#/store', label: 'App store', view: store },
  { hash: '#/system', label: 'System', view: system },
];

function enter(session) {
  box = new Box(session);
  const badge = h('span', { class: 'badge connecting', id: 'conn', role: 'status' }, 'connecting…');
  const nav = h(
    'nav',
    { 'aria-label': 'Sections' },
    VIEWS.map((v) => h('a', { href: v.hash, dataset: { hash: v.hash } }, v.label)),
  );
  const logout = h(
    'button',
    {
      type: 'button',
      class: 'link',
      onclick: async () => {
        try {
          await box.logout();
        } catch {
          // Signed out here either way.
        }
      },
    },
    'Log out',
  );
  const main = h('main', { id: 'main', tabindex: '-1' });
  fill(
    root,
    h('a', { class: 'skip', href: '#main' }, 'Skip to content'),
    h(
      'header',
      {},
      h('span', { class: 'brand' }, 'CubeOS'),
      nav,
      h('span', { class: 'who' }, badge, h('span', { class: 'user' }, `${session.user} (${session.role})`), logout),
    ),
    h('div', { class: 'offline-banner', id: 'offline', hidden: true, role: 'alert' }, 'Offline: the box is not answering. Reconnecting…'),
    main,
  );
  box.addEventListener('status', (e) => {
    const status = e.detail;
    if (status === 'signed-out') {
      box = null;
      location.hash = '';
      start();
      return;
    }
    badge.className = `badge ${status}`;
    badge.textContent = status === 'online' ? 'online' : status === 'offline' ? 'offline' : 'connecting…';
    document.getElementById('offline').hidden = status !== 'offline';
  });
  box.start();
  route();
}

let current = null;

function route() {
  if (!box) return;
  const hash = location.hash || '#/apps';
  const main = document.getElementById('main');
  if (!main) return;
  if (current && current.stop) current.stop();
  for (const a of document.querySelectorAll('nav a')) {
    if (hash.startsWith(a.dataset.hash) || (a.dataset.hash === '#/apps' && hash.startsWith('#/app/'))) {
      a.setAttribute('aria-current', 'page');
    } else a.removeAttribute('aria-current');
  }
  const ctx = { box, main, can: (need) => can(box, need), toast };
  let app = null;
  try {
    app = hash.startsWith('#/app/') ? decodeURIComponent(hash.slice('#/app/'.length)) : null;
  } catch {
    app = null; // not an app name: the list instead
  }
  if (app) current = apps.detail(ctx, app);
  else current = (VIEWS.find((v) => hash.startsWith(v.hash)) || VIEWS[0]).view.show(ctx);
}

window.addEventListener('hashchange', route);
start();
