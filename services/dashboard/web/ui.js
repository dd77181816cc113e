// Small DOM helpers the views share: an element builder, dialogs, a progress bar
// and messages. Text always goes in as text (never as HTML), so nothing from the
// bus can inject markup.

/** `h('button', {class: 'x', onclick}, 'Label', child)`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/**
 * An app's icon: the image at `src` when the box has one, else a square in a
 * colour of the name's own with its first letter (no request, no broken image).
 */
export function icon(src, name, size) {
  if (src) return h('img', { src, alt: '', width: String(size), height: String(size), loading: 'lazy' });
  let hue = 7;
  for (const c of name) hue = (hue * 31 + c.charCodeAt(0)) % 360;
  const letter = (name.match(/[a-z0-9]/i) || ['?'])[0].toUpperCase();
  const box = h('span', { class: 'placeholder', 'aria-hidden': 'true' }, letter);
  box.style.setProperty('--hue', String(hue));
  box.style.setProperty('--size', `${size}px`);
  return box;
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A short message at the bottom of the screen, read out by screen readers. */
export function toast(message, kind = 'info') {
  const area = document.getElementById('toasts');
  const item = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  area.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 4000);
}

/** A modal dialog; resolves with the value `onSubmit` returns, or null if closed. */
export function dialog(title, body, actions) {
  return new Promise((resolve) => {
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const box = h('dialog', { 'aria-labelledby': titleId });
    const close = (value) => {
      box.close();
      box.remove();
      resolve(value);
    };
    const buttons = actions.map((a) =>
      h(
        'button',
        {
          type: 'button',
          class: a.kind || '',
          onclick: async () => {
            if (!a.value) return close(null);
            const v = await a.value();
            if (v !== undefined) close(v);
          },
        },
        a.label,
      ),
    );
    box.append(h('h2', { id: titleId }, title), h('div', { class: 'dialog-body' }, body), h('div', { class: 'actions' }, buttons));
    box.addEventListener('cancel', (e) => {
      e.preventDefault();
      close(null);
    });
    document.body.append(box);
    box.showModal();
  });
}

/** Asks to confirm; resolves true or false. */
export async function confirm(title, text, label, extra) {
  const answer = await dialog(title, [h('p', {}, text), extra || null], [
    { label: 'Cancel' },
    { label, kind: 'danger', value: () => true },
  ]);
  return answer === true;
}

/** A progress bar for a job's latest event (`{step, of, name, status, message}`). */
export function progressBar(event, label) {
  const done = event.status === 'done';
  const failed = event.status === 'failed';
  const value = done ? event.of : Math.max(0, event.step - (failed ? 1 : 0));
  const text = failed
    ? `failed at ${event.name}: ${event.message}`
    : done
      ? 'done'
      : `${event.name} (${event.step}/${event.of})${event.message ? `: ${event.message}` : ''}`;
  return h(
    'div',
    { class: `job ${event.status}` },
    h('progress', { max: String(event.of || 1), value: String(value), 'aria-label': label }),
    h('span', { class: 'job-text' }, text),
  );
}

/** A labelled form field. */
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('small', {}, hint) : null);
}

/** The message to show for a failed command. */
export function errorText(e) {
  if (e && e.code === 'forbidden') return `Not allowed: ${e.message}`;
  return e && e.message ? e.message : String(e);
}

/** Seconds as "3 d 4 h" / "5 h 2 min" / "40 s". */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const hr = Math.floor((s % 86400) / 3600);
  const min = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${hr} h`;
  if (hr) return `${hr} h ${min} min`;
  if (min) return `${min} min`;
  return `${s} s`;
}
