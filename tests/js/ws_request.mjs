// MQTT-over-WebSocket request client built on MQTT.js, the same client library
// the dashboard uses in the browser. The Rust integration tests spawn it to
// prove that a real browser-style client can talk to the broker.
//
// Usage:
//   node ws_request.mjs --url ws://127.0.0.1:PORT --username U --password P \
//     --topic cubeos/cmd/registry/app.list --args '{"a":1}' [--timeout-ms 5000] \
//     [--retained-filter cubeos/state/#] [--expect-retained N]
//
// Connects with MQTT 3.1.1 and a clean session, subscribes (QoS 1) to
// cubeos/reply/<clientId>, publishes (QoS 1) {"id","reply_to","args"} to --topic,
// and prints the reply whose `id` matches as one JSON line on stdout. With
// --retained-filter it also subscribes (QoS 0) to that filter first, counts
// distinct topics received with the retain flag, and prints {"retained_count": N}
// as a second line (once the reply has arrived and, with --expect-retained, once
// at least N topics have been seen). Exit 0 on success; on timeout, connection
// error (including CONNACK refusal) or bad usage: one line on stderr, exit 2.

import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
// The page's own topic matcher: this client filters as the dashboard does.
import { topicMatches } from '../../services/dashboard/web/bus.js';

let failed = false;
function fail(msg) {
  failed = true;
  process.stderr.write(`ws_request: ${msg}\n`, () => process.exit(2));
}

let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      url: { type: 'string' },
      username: { type: 'string' },
      password: { type: 'string' },
      topic: { type: 'string' },
      args: { type: 'string', default: '{}' },
      'timeout-ms': { type: 'string', default: '5000' },
      'retained-filter': { type: 'string' },
      'expect-retained': { type: 'string' },
    },
  }));
  for (const k of ['url', 'topic']) if (!opts[k]) throw new Error(`--${k} is required`);
  opts.argsJson = JSON.parse(opts.args);
  opts.timeoutMs = Number(opts['timeout-ms']);
  if (!(opts.timeoutMs > 0)) throw new Error('--timeout-ms must be a positive number');
  opts.expect = opts['expect-retained'] === undefined ? null : Number(opts['expect-retained']);
  if (opts.expect !== null && !Number.isInteger(opts.expect)) throw new Error('--expect-retained must be an integer');
} catch (e) {
  fail(`usage error: ${e.message}`);
}

if (!failed) run();

function run() {
  const clientId = `ws-${randomBytes(8).toString('hex')}`;
  const replyTopic = `cubeos/reply/${clientId}`;
  const requestId = randomBytes(8).toString('hex');
  const retainedFilter = opts['retained-filter'];
  const retainedTopics = new Set();
  let connected = false;
  let reply = null;
  let done = false;

  const client = mqtt.connect(opts.url, {
    protocolVersion: 4, // MQTT 3.1.1; MQTT.js then uses WebSocket subprotocol "mqtt"
    clean: true,
    clientId,
    username: opts.username,
    password: opts.password,
    reconnectPeriod: 0, // no automatic reconnect: any connection failure is final
    connectTimeout: opts.timeoutMs,
  });

  const finish = (err) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    client.end(true);
    if (err) return fail(err);
    let out = `${JSON.stringify(reply)}\n`;
    if (retainedFilter) out += `${JSON.stringify({ retained_count: retainedTopics.size })}\n`;
    process.stdout.write(out, () => process.exit(0));
  };

  const maybeFinish = () => {
    if (reply === null) return;
    if (retainedFilter && opts.expect !== null && retainedTopics.size < opts.expect) return;
    finish();
  };

  const waitingFor = () =>
    !connected
      ? 'CONNACK'
      : reply === null
        ? `reply on ${replyTopic}`
        : `retained messages (${retainedTopics.size}/${opts.expect})`;

  const timer = setTimeout(
    () => finish(`timeout after ${opts.timeoutMs} ms waiting for ${waitingFor()}`),
    opts.timeoutMs,
  );

  // CONNACK refusals arrive here too (e.g. "Connection refused: Not authorized").
  client.on('error', (err) => finish(`connection error: ${err.message}`));
  client.on('close', () => finish(`connection closed while waiting for ${waitingFor()}`));

  client.on('message', (topic, payload, packet) => {
    if (topic === replyTopic) {
      let msg;
      try {
        msg = JSON.parse(payload.toString('utf8'));
      } catch {
        return; // not JSON: not our reply
      }
      if (msg && msg.id === requestId) reply = msg;
    }
    if (retainedFilter && packet.retain && topicMatches(retainedFilter, topic)) {
      retainedTopics.add(topic);
    }
    maybeFinish();
  });

  client.on('connect', async () => {
    connected = true;
    try {
      // MQTT.js rejects these promises itself if the SUBACK refuses (0x80).
      if (retainedFilter) await client.subscribeAsync(retainedFilter, { qos: 0 });
      await client.subscribeAsync(replyTopic, { qos: 1 });
      const envelope = { id: requestId, reply_to: replyTopic, args: opts.argsJson };
      await client.publishAsync(opts.topic, JSON.stringify(envelope), { qos: 1 });
    } catch (err) {
      finish(`request failed: ${err.message}`);
    }
  });
}
