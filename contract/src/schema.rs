//! The contract as a file: the JSON Schema of every command's arguments and
//! reply, every state topic's and event's payload and the envelopes, written to
//! `contract/cubeos-contract.json` for the dashboard and third-party clients.
//!
//! The file is generated from the types; a test fails when the checked-in copy
//! is stale (`CUBEOS_WRITE_CONTRACT=1 cargo test -p cubeos-contract` rewrites it).

use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Value, json};

use crate::api::{self, broker, job, orchestrator, port_allocator, proxy, registry};
use crate::envelope::{ReplyEnvelope, RequestEnvelope};
use crate::models::{AppRecord, ProfileRecord};
use crate::topics;

/// A retained state topic or an event topic, and its payload's schema.
struct Payload {
    topic: String,
    what: &'static str,
    schema: fn(&mut SchemaGenerator) -> schemars::Schema,
}

fn payload<T: JsonSchema>(topic: String, what: &'static str) -> Payload {
    Payload {
        topic,
        what,
        schema: |g| g.subschema_for::<T>(),
    }
}

/// Every retained state topic the services publish.
fn states() -> Vec<Payload> {
    vec![
        payload::<AppRecord>(
            topics::app_state("<name>"),
            "an app with its ports and names (registry)",
        ),
        payload::<orchestrator::AppStatus>(topics::app_status("<name>"), "an app's runtime status (orchestrator)"),
        payload::<BTreeMap<String, String>>(topics::system_state(), "the system state, key -> value (registry)"),
        payload::<ProfileRecord>(topics::profile_state("<name>"), "a profile with its apps (registry)"),
        payload::<port_allocator::PortStats>(topics::ports_state(), "ranges in use and free (port allocator)"),
        payload::<proxy::ProxyStatus>(topics::proxy_state(), "the DNS and proxy backends (proxy)"),
        payload::<broker::BrokerState>(topics::broker_state(), "subscribers that fell behind (broker)"),
    ]
}

/// Every event topic the services publish.
fn events() -> Vec<Payload> {
    vec![
        payload::<job::Progress>(topics::app_progress("<name>"), "an install or lifecycle job's progress"),
        payload::<job::Progress>(topics::image_progress(), "an image load's progress"),
        payload::<registry::Revoked>(topics::auth_revoked(), "sessions and users whose connections end"),
        payload::<broker::Lagging>(topics::broker_lagging(), "a subscriber fell behind and lost messages"),
    ]
}

/// The whole contract as one JSON Schema document.
pub fn document() -> Value {
    let mut generator = SchemaGenerator::new(SchemaSettings::draft2020_12());
    let mut commands: BTreeMap<&str, BTreeMap<&str, Value>> = BTreeMap::new();
    for spec in api::all() {
        let entry = json!({
            "topic": topics::command(spec.service, spec.action),
            "need": spec.need.as_str(),
            "args": (spec.args_schema)(&mut generator),
            "reply": (spec.reply_schema)(&mut generator),
        });
        commands.entry(spec.service).or_default().insert(spec.action, entry);
    }
    let topics_of = |list: Vec<Payload>, generator: &mut SchemaGenerator| -> Value {
        list.into_iter()
            .map(|p| {
                let schema = (p.schema)(generator);
                (p.topic, json!({ "what": p.what, "payload": schema }))
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let states = topics_of(states(), &mut generator);
    let events = topics_of(events(), &mut generator);
    let request = generator.subschema_for::<RequestEnvelope>();
    let reply = generator.subschema_for::<ReplyEnvelope>();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "CubeOS bus contract",
        "description": "Commands are published on their topic in a request envelope whose `args` follow `args`; the reply envelope's `data` follows `reply`. `need` is the least role that may call it through the gate. Service liveness (`cubeos/svc/<service>/status`) is plain text: starting, online or offline.",
        "envelopes": { "request": request, "reply": reply },
        "commands": commands,
        "states": states,
        "events": events,
        "$defs": generator.take_definitions(true),
    })
}

/// The document as the checked-in file holds it.
pub fn file_text() -> String {
    format!("{:#}\n", document())
}
