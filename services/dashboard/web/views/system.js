// System: the box (domain, gateway, version, uptime), its services, port ranges in
// use, names (DNS and proxy, desired against actual) and, for admins, users and
// device / node tokens (a token is shown once, when issued).

import { confirm, dialog, duration, errorText, field, fill, h } from '../ui.js';

function table(headers, rows) {
  return h(
    'div',
    { class: 'table-wrap' },
    h('table', {}, h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))), h('tbody', {}, rows)),
  );
}

function boxPanel(box) {
  const s = box.get('cubeos/state/system') || {};
  const boot = s.last_boot ? Date.parse(`${s.last_boot.replace(' ', 'T')}Z`) : NaN;
  const services = box
    .all('cubeos/svc/+/status')
    .map(([t, v]) => [t.split('/')[2], typeof v === 'string' ? v : JSON.stringify(v)])
    .sort();
  return [
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Domain'),
      h('dd', {}, s.domain || '–'),
      h('dt', {}, 'Gateway'),
      h('dd', {}, s.gateway_ip || '–'),
      h('dt', {}, 'Version'),
      h('dd', {}, s.version || '–'),
      h('dt', {}, 'Up for'),
      h('dd', {}, Number.isNaN(boot) ? '–' : duration((Date.now() - boot) / 1000)),
    ),
    table(
      ['Service', 'State'],
      services.map(([name, state]) => h('tr', {}, h('td', {}, name), h('td', {}, h('span', { class: `chip ${state === 'online' ? 'running' : 'failing'}` }, state)))),
    ),
  ];
}

function portsPanel(box) {
  const p = box.get('cubeos/state/ports');
  if (!p) return h('p', {}, 'No port report yet.');
  const rows = ['tcp', 'udp'].flatMap((proto) =>
    (p[proto] || []).map((r) => h('tr', {}, h('td', {}, r.type), h('td', {}, proto), h('td', {}, `${r.start}–${r.end}`), h('td', {}, String(r.in_use)), h('td', {}, String(r.free)))),
  );
  return table(['Range', 'Protocol', 'Ports', 'In use', 'Free'], rows);
}

async function namesPanel(box, where) {
  try {
    const [dns, proxy] = await Promise.all([box.request('proxy', 'dns.list', {}), box.request('proxy', 'proxy.list', {})]);
    fill(
      where,
      [['DNS', dns], ['Reverse proxy', proxy]].map(([what, b]) =>
        h(
          'div',
          {},
          h('h3', {}, `${what}: ${b.backend} (${b.healthy ? 'healthy' : `unhealthy: ${b.error || 'no reason given'}`})`),
          table(
            ['Name', 'Desired', 'Actual', 'State'],
            b.entries.map((e) => h('tr', { class: e.status }, h('td', {}, e.name), h('td', {}, e.desired || '–'), h('td', {}, e.actual || '–'), h('td', {}, e.status))),
          ),
        ),
      ),
    );
  } catch (e) {
    fill(where, h('p', {}, `Names unavailable: ${errorText(e)}`));
  }
}

const ROLES = ['readonly', 'user', 'admin'];

function roleSelect(value, label) {
  return h('select', { 'aria-label': label }, ROLES.map((r) => h('option', { value: r, selected: r === value }, r)));
}

async function usersPanel(ctx, where) {
  const { box } = ctx;
  const reload = () => usersPanel(ctx, where);
  const run = async (action, args, done) => {
    try {
      await box.request('registry', action, args);
      if (done) ctx.toast(done);
      reload();
    } catch (e) {
      ctx.toast(errorText(e), 'error');
    }
  };
  let users;
  try {
    users = await box.request('registry', 'user.list', {});
  } catch (e) {
    fill(where, h('p', {}, `Users unavailable: ${errorText(e)}`));
    return;
  }
  const rows = users.map((u) => {
    const role = roleSelect(u.role, `Role of ${u.username}`);
    role.addEventListener('change', () => run('user.role', { username: u.username, role: role.value }, `${u.username} is now ${role.value}`));
    return h(
      'tr',
      { dataset: { user: u.username } },
      h('td', {}, u.username),
      h('td', {}, role),
      h(
        'td',
        { class: 'actions' },
        h(
          'button',
          {
            type: 'button',
            onclick: async () => {
              const pass = h('input', { type: 'password', autocomplete: 'new-password' });
              const value = await dialog(`New password for ${u.username}`, field('Password', pass), [
                { label: 'Cancel' },
                { label: 'Set password', kind: 'primary', value: () => pass.value || undefined },
              ]);
              if (value) run('user.passwd', { username: u.username, password: value }, `password of ${u.username} changed`);
            },
          },
          'Reset password',
        ),
        h(
          'button',
          {
            type: 'button',
            class: 'danger',
            onclick: async () => {
              if (await confirm(`Remove ${u.username}?`, 'Their sessions end at once.', 'Remove')) run('user.delete', { username: u.username }, `${u.username} removed`);
            },
          },
          'Remove',
        ),
      ),
    );
  });
  const name = h('input', { id: 'new-user', autocomplete: 'off', required: true });
  const pass = h('input', { id: 'new-user-password', type: 'password', autocomplete: 'new-password', required: true });
  const role = roleSelect('readonly', 'Role of the new user');
  role.id = 'new-user-role';
  fill(
    where,
    table(['User', 'Role', 'Actions'], rows),
    h(
      'form',
      {
        class: 'inline',
        onsubmit: (e) => {
          e.preventDefault();
          run('user.add', { username: name.value.trim(), password: pass.value, role: role.value }, `${name.value.trim()} added`);
        },
      },
      field('New user', name),
      field('Password', pass),
      field('Role', role),
      h('button', { type: 'submit', class: 'primary' }, 'Add user'),
    ),
  );
}

async function tokensPanel(ctx, where) {
  const { box } = ctx;
  const reload = () => tokensPanel(ctx, where);
  let tokens;
  try {
    tokens = (await box.request('registry', 'token.list', {})).filter((t) => t.kind !== 'session');
  } catch (e) {
    fill(where, h('p', {}, `Tokens unavailable: ${errorText(e)}`));
    return;
  }
  const kind = h('select', { id: 'token-kind' }, h('option', { value: 'device' }, 'device'), h('option', { value: 'node' }, 'node'));
  const id = h('input', { id: 'token-id', required: true, pattern: '[a-z0-9][a-z0-9\\-]{0,62}', placeholder: 'e.g. button-1' });
  fill(
    where,
    table(
      ['Kind', 'For', 'Created', 'Actions'],
      tokens.map((t) =>
        h(
          'tr',
          {},
          h('td', {}, t.kind),
          h('td', {}, t.subject),
          h('td', {}, t.created_at),
          h(
            'td',
            {},
            h(
              'button',
              {
                type: 'button',
                class: 'danger',
                onclick: async () => {
                  if (!(await confirm(`Revoke the token of ${t.subject}?`, 'It stops working at once.', 'Revoke'))) return;
                  try {
                    await box.request('registry', 'token.revoke', { id: t.id });
                    reload();
                  } catch (e) {
                    ctx.toast(errorText(e), 'error');
                  }
                },
              },
              'Revoke',
            ),
          ),
        ),
      ),
    ),
    h(
      'form',
      {
        class: 'inline',
        onsubmit: async (e) => {
          e.preventDefault();
          try {
            const issued = await box.request('registry', 'token.issue', { kind: kind.value, id: id.value.trim() });
            const shown = h('input', { readonly: true, value: issued.token, id: 'issued-token', class: 'mono' });
            await dialog(`Token for ${issued.subject}`, [h('p', {}, 'Copy it now: it is not shown again.'), field('Token', shown)], [{ label: 'Done', kind: 'primary', value: () => true }]);
            reload();
          } catch (err) {
            ctx.toast(errorText(err), 'error');
          }
        },
      },
      field('Kind', kind),
      field('Device or node id', id),
      h('button', { type: 'submit', class: 'primary' }, 'Issue token'),
    ),
  );
}

/** `#/system`. */
export function show(ctx) {
  const { box, main } = ctx;
  const boxEl = h('div');
  const ports = h('div');
  const names = h('div', {}, h('p', {}, 'Loading…'));
  const users = h('div', {}, h('p', {}, 'Loading…'));
  const tokens = h('div', {}, h('p', {}, 'Loading…'));
  const section = (id, title, body) => h('section', { 'aria-labelledby': id }, h('h2', { id }, title), body);
  fill(
    main,
    h('h1', {}, 'System'),
    section('box-h', 'This box', boxEl),
    section('ports-h', 'Port ranges', ports),
    section('names-h', 'Names', names),
    ctx.can('admin') ? [section('users-h', 'Users', users), section('tokens-h', 'Device and node tokens', tokens)] : null,
  );
  const render = () => {
    fill(boxEl, boxPanel(box));
    fill(ports, portsPanel(box));
  };
  render();
  const onState = () => render();
  box.addEventListener('state', onState);
  const tick = setInterval(render, 30000);
  const whenOnline = () => {
    if (box.status !== 'online') return box.addEventListener('status', whenOnline, { once: true });
    namesPanel(box, names);
    if (ctx.can('admin')) {
      usersPanel(ctx, users);
      tokensPanel(ctx, tokens);
    }
  };
  whenOnline();
  return {
    stop() {
      clearInterval(tick);
      box.removeEventListener('state', onState);
      box.removeEventListener('status', whenOnline);
    },
  };
}
