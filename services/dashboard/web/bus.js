// The page's one connection to the box: MQTT 3.1.1 over WebSocket through the gate
// (MQTT.js, loaded as the global `mqtt`), with the bus contract's request/reply,
// a mirror of the retained state topics, and events.
//
// Signing in happens on a short anonymous connection (the gate lets those call only
// `auth.login`, `setup.status` and, on first boot, `setup`); the session token it
// returns is kept for the tab (sessionStorage) and is what every later connection,
// reconnections included, signs in with. It is refreshed before it expires.

/* global mqtt */

const SESSION_KEY = 'cubeos.session';
const REQUEST_TIMEOUT_MS = 20000;

/** An error reply of the contract: `code` is one of its closed set. */
export class BusError extends Error {
  constructor(code, message, details) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

/** The WebSocket URL of the gate on this page's origin. */
export function gateUrl() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/mqtt`;
}

function randomId(prefix) {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Does MQTT topic `topic` match filter `filter`? */
export function topicMatches(filter, topic) {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

/** The saved session of this tab, or null. */
export function savedSession() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

/**
 * Keeps a session for the tab, with when to renew it by this browser's clock:
 * 4/5 of its life from now, counted in the box's seconds (`expires_in`), since a
 * box without a real-time clock may disagree with the browser about the date.
 */
function saveSession(session) {
  if (!session) {
    sessionStorage.removeItem(SESSION_KEY);
    return null;
  }
  const renewAt = session.expires_in ? Date.now() + session.expires_in * 800 : null;
  const kept = { ...session, renew_at: renewAt };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(kept));
  return kept;
}

/** Request/reply over one MQTT.js client. */
class Requester {
  constructor(client, clientId) {
    this.client = client;
    this.replyTopic = `cubeos/reply/${clientId}`;
    this.pending = new Map();
  }

  /** Hands a message to a waiting request; true when it was a reply. */
  take(topic, text) {
    if (topic !== this.replyTopic) return false;
    let reply;
    try {
      reply = JSON.parse(text);
    } catch {
      return true;
    }
    const waiting = this.pending.get(reply && reply.id);
    if (!waiting) return true;
    this.pending.delete(reply.id);
    clearTimeout(waiting.timer);
    if (reply.ok) waiting.resolve(reply.data);
    else {
      const e = reply.error || {};
      waiting.reject(new BusError(e.code || 'internal', e.message || 'the box gave no reason', e.details));
    }
    return true;
  }

  request(service, action, args = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    const id = randomId('r');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new BusError('timeout', `no answer from ${service} within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      const envelope = JSON.stringify({ id, reply_to: this.replyTopic, args });
      this.client.publish(`cubeos/cmd/${service}/${action}`, envelope, { qos: 1 }, (err) => {
        if (err && this.pending.delete(id)) {
          clearTimeout(timer);
          reject(new BusError('unavailable', `not sent: ${err.message}`));
        }
      });
    });
  }

  failAll(why) {
    for (const [id, waiting] of this.pending) {
      clearTimeout(waiting.timer);
      waiting.reject(new BusError('unavailable', why));
      this.pending.delete(id);
    }
  }
}

/** Opens a connection and resolves once it is accepted (rejects on refusal). */
function open(options) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(gateUrl(), { protocolVersion: 4, clean: true, connectTimeout: 8000, ...options });
    const onError = (err) => {
      client.end(true);
      reject(new BusError(err.code === 5 || err.code === 4 ? 'unauthorized' : 'unavailable', err.message));
    };
    client.once('connect', () => {
      client.off('error', onError);
      resolve(client);
    });
    client.once('error', onError);
    if (options.reconnectPeriod === 0) {
      client.once('close', () => reject(new BusError('unavailable', 'the box is not answering')));
    }
  });
}

/**
 * Runs one command on a short connection without credentials: signing in and
 * first-boot setup.
 */
export async function anonymous(service, action, args) {
  const clientId = randomId('dash-');
  const client = await open({ clientId, reconnectPeriod: 0 });
  const requester = new Requester(client, clientId);
  client.on('message', (topic, payload) => requester.take(topic, payload.toString()));
  try {
    await client.subscribeAsync(requester.replyTopic, { qos: 1 });
    return await requester.request(service, action, args);
  } finally {
    client.end(true);
  }
}

/** Signs in with a password; the session is kept for this tab. */
export async function login(username, password) {
  return saveSession(await anonymous('registry', 'auth.login', { username, password }));
}

/** First-boot setup: creates the first admin and signs in as them. */
export async function setup(username, password) {
  return saveSession(await anonymous('registry', 'setup', { username, password }));
}

/** Whether the box still needs its first admin. */
export async function setupStatus() {
  return anonymous('registry', 'setup.status', {});
}

/**
 * The signed-in connection: a mirror of `cubeos/state/#` and liveness, events, and
 * commands. Emits `status` (`connecting` / `online` / `offline` / `signed-out`),
 * `state` (topic, value or null), and `event` (topic, value).
 */
export class Box extends EventTarget {
  constructor(session) {
    super();
    this.session = session;
    this.state = new Map();
    // A client id of its own: a duplicated tab must not take this one's over.
    this.clientId = randomId('dash-');
    this.status = 'connecting';
    this.refreshTimer = null;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.emit('status', status);
  }

  get role() {
    return this.session.role;
  }

  /** Connects, and keeps reconnecting (with the session token) until closed. */
  start() {
    const client = mqtt.connect(gateUrl(), {
      protocolVersion: 4,
      clean: true,
      clientId: this.clientId,
      username: this.session.user,
      password: this.session.token,
      reconnectPeriod: 2000,
      connectTimeout: 8000,
      keepalive: 30,
    });
    this.client = client;
    this.requester = new Requester(client, this.clientId);
    client.on('connect', () => this.onConnect());
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    client.on('close', () => {
      if (this.status === 'signed-out') return;
      this.requester.failAll('the connection to the box was lost');
      this.setStatus('offline');
    });
    client.on('error', (err) => {
      // CONNACK 4/5: the session is over (expired, revoked, logged out elsewhere).
      if (err.code === 4 || err.code === 5) this.signedOut();
    });
    this.scheduleRefresh();
  }

  async onConnect() {
    // A new connection starts from nothing: retained state arrives again.
    this.state.clear();
    this.emit('state', null);
    try {
      await this.client.subscribeAsync(
        {
          [this.requester.replyTopic]: { qos: 1 },
          'cubeos/state/#': { qos: 0 },
          'cubeos/svc/+/status': { qos: 0 },
          'cubeos/events/+/+/progress': { qos: 0 },
          'cubeos/events/images/progress': { qos: 0 },
        },
      );
      this.setStatus('online');
    } catch (e) {
      this.setStatus('offline');
    }
  }

  onMessage(topic, payload) {
    const text = payload.toString();
    if (this.requester.take(topic, text)) return;
    let value = null;
    if (text.length) {
      try {
        value = JSON.parse(text);
      } catch {
        value = text; // liveness is a bare word
      }
    }
    if (topic.startsWith('cubeos/events/')) {
      this.emit('event', { topic, value });
      return;
    }
    if (value === null) this.state.delete(topic);
    else this.state.set(topic, value);
    this.emit('state', { topic, value });
  }

  /** One retained state value, or undefined. */
  get(topic) {
    return this.state.get(topic);
  }

  /** Every retained value whose topic matches `filter`, as [topic, value] pairs. */
  all(filter) {
    return [...this.state].filter(([t]) => topicMatches(filter, t));
  }

  request(service, action, args) {
    if (this.status !== 'online') {
      return Promise.reject(new BusError('unavailable', 'the box is offline; waiting to reconnect'));
    }
    return this.requester.request(service, action, args);
  }

  /** Renews the session token when 4/5 of its time has passed. */
  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    if (!this.session.renew_at) return;
    const wait = Math.max(5000, Math.min(this.session.renew_at - Date.now(), 2 ** 31 - 1));
    this.refreshTimer = setTimeout(() => this.refresh(), wait);
  }

  async refresh() {
    try {
      const fresh = await this.request('registry', 'auth.refresh', {});
      this.session = saveSession({ ...this.session, ...fresh });
      // Reconnections sign in with the new token.
      this.client.options.password = fresh.token;
      this.scheduleRefresh();
    } catch {
      this.refreshTimer = setTimeout(() => this.refresh(), 30000);
    }
  }

  /** Ends the session at the box, then here. */
  async logout() {
    try {
      await this.request('registry', 'auth.logout', {});
    } finally {
      this.signedOut();
    }
  }

  signedOut() {
    clearTimeout(this.refreshTimer);
    saveSession(null);
    this.setStatus('signed-out');
    this.requester.failAll('signed out');
    this.client.end(true);
  }
}
