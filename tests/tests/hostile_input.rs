//! 1,000 hostile payloads at the registry: each one with a usable reply_to gets a
//! typed error, none crashes it, and the database is unchanged.

use std::collections::HashSet;
use std::time::Duration;

use cubeos_contract::envelope::ReplyEnvelope;
use cubeos_contract::topics;
use cubeos_tests::{System, snapshot};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

const CODES: &[&str] = &[
    "bad_request",
    "not_found",
    "conflict",
    "unauthorized",
    "forbidden",
    "unavailable",
    "timeout",
    "internal",
];

/// Names that must never be accepted: traversal, SQL metacharacters, odd bytes.
const BAD_NAMES: &[&str] = &[
    "../x",
    "..",
    "a/../../etc",
    "x'; DROP TABLE apps;--",
    "\" OR 1=1 --",
    "a\0b",
    "UPPER",
    "-lead",
    "spa ce",
    "%2e%2e%2f",
    "a;b",
    "name\n",
    "ünïcode",
    "",
    "a*",
    "$(reboot)",
];

/// One hostile payload and whether a reply is expected.
struct Case {
    action: String,
    payload: Vec<u8>,
    replied: bool,
}

fn cases(reply_to: &str) -> Vec<Case> {
    let mut out = Vec::new();
    let env = |id: usize, args: Value| json!({ "id": format!("h{id}"), "reply_to": reply_to, "args": args });
    let mut push = |action: &str, payload: Vec<u8>, replied: bool| {
        out.push(Case {
            action: action.to_owned(),
            payload,
            replied,
        });
    };
    let mut id = 0usize;
    let mut next = || {
        id += 1;
        id
    };
    for round in 0..20 {
        for name in BAD_NAMES {
            push(
                "app.create",
                env(next(), json!({ "name": name })).to_string().into_bytes(),
                true,
            );
            push(
                "app.get",
                env(next(), json!({ "name": name })).to_string().into_bytes(),
                true,
            );
            push(
                "app.delete",
                env(next(), json!({ "name": name })).to_string().into_bytes(),
                true,
            );
            push(
                "profile.create",
                env(next(), json!({ "name": name })).to_string().into_bytes(),
                true,
            );
        }
        // Wrong types and out-of-range values.
        for args in [
            json!({ "name": 42 }),
            json!({ "name": ["a"] }),
            json!({ "name": "ok-name", "ports": [{ "port": 70000 }] }),
            json!({ "name": "ok-name", "ports": [{ "port": -1 }] }),
            json!({ "name": "ok-name", "ports": [{ "port": "80" }] }),
            json!({ "name": "ok-name", "ports": [{ "port": 0 }] }),
            json!({ "name": "ok-name", "ports": [{ "port": 8080, "protocol": "sctp" }] }),
            json!({ "name": "ok-name", "type": "root" }),
            json!({ "name": "ok-name", "enabled": "yes" }),
            json!({ "name": "ok-name", "compose_path": "../../etc/passwd" }),
            json!({ "name": "ok-name", "data_path": "/cubeos/../../etc" }),
            json!({ "name": "ok-name", "fqdns": [{ "fqdn": "not a domain", "backend_port": 80 }] }),
            json!({ "name": "ok-name", "display_name": "x".repeat(10_000) }),
            json!({ "name": "ok-name", "surprise": true }),
            json!("just a string"),
            json!([1, 2, 3]),
        ] {
            push("app.create", env(next(), args).to_string().into_bytes(), true);
        }
        for (action, args) in [
            ("port.reserve", json!({ "app": "ghost", "port": 6100 })),
            ("port.reserve", json!({ "app": "ok-name", "port": 1e10 })),
            ("port.release", json!({ "app": "ghost" })),
            ("fqdn.add", json!({ "app": "ghost", "fqdn": "a.b", "backend_port": 1 })),
            ("fqdn.remove", json!({ "fqdn": "../x" })),
            ("state.set", json!({ "key": "schema_version", "value": "99" })),
            ("state.set", json!({ "key": "Bad Key!", "value": "x" })),
            ("state.set", json!({ "key": "k", "value": 5 })),
            ("state.set", json!({ "key": "domain", "value": "../../etc" })),
            (
                "state.set",
                json!({ "key": "domain", "value": "x.cube\naddress=/#/6.6.6.6" }),
            ),
            (
                "state.set",
                json!({ "key": "gateway_ip", "value": "10.42.24.1; rm -rf /" }),
            ),
            ("state.get", json!({ "key": "../../x" })),
            ("pref.delete", json!({ "key": "nothing-here" })),
            ("profile.delete", json!({ "name": "full" })),
            ("profile.set_apps", json!({ "name": "full", "apps": { "ghost": true } })),
            ("profile.update", json!({ "name": "full", "is_active": "very" })),
            ("app.update", json!({ "name": "ghost", "enabled": false })),
        ] {
            push(action, env(next(), args).to_string().into_bytes(), true);
        }
        // Unknown actions and broken envelopes.
        push("app.explode", env(next(), json!({})).to_string().into_bytes(), true);
        push("drop table", env(next(), json!({})).to_string().into_bytes(), true);
        push(
            "app.create",
            format!(r#"{{"id":"h{}","reply_to":"{reply_to}","args":{{"name": "#, next()).into_bytes(),
            true,
        );
        push(
            "app.create",
            format!(r#"{{"id":"h{}","reply_to":"{reply_to}","args":nul}}"#, next()).into_bytes(),
            true,
        );
        push(
            "app.create",
            format!(r#"{{"id":"h{}","reply_to":"{reply_to}"}} trailing"#, next()).into_bytes(),
            true,
        );
        // No usable reply_to: logged and dropped.
        push(
            "app.create",
            br#"{"id":"x","args":{"name":"no-reply"}}"#.to_vec(),
            false,
        );
        push(
            "app.create",
            br#"{"id":"x","reply_to":"cubeos/state/apps/evil","args":{"name":"evil"}}"#.to_vec(),
            false,
        );
        push(
            "app.create",
            br#"{"id":"x","reply_to":"cubeos/reply/#","args":{"name":"evil"}}"#.to_vec(),
            false,
        );
        push("app.create", b"\xff\xfe\x00garbage".to_vec(), false);
        push("app.create", Vec::from(&b"{{{{{{{{{{"[..]), false);
        if round == 0 {
            // 1 MB: over the command limit, still answered.
            let big = json!({ "id": "big", "reply_to": reply_to, "args": { "name": "big", "description": "x".repeat(1_000_000) } });
            push("app.create", big.to_string().into_bytes(), true);
            let deep = format!(
                r#"{{"id":"deep","reply_to":"{reply_to}","args":{}{}}}"#,
                "[".repeat(5000),
                "]".repeat(5000)
            );
            push("app.create", deep.into_bytes(), true);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payloads_get_typed_errors_and_change_nothing() {
    let system = System::start().await;
    let admin = system.client("admin").await;
    admin
        .request(
            "registry",
            "app.create",
            &json!({ "name": "ok-name", "ports": [{ "port": 6200 }] }),
        )
        .await
        .unwrap();
    let before = snapshot(&system.database_path()).await;

    let mut options = MqttOptions::new("hostile", "127.0.0.1", system.mqtt_port());
    options.set_credentials(&system.credentials.username, &system.credentials.password);
    options.set_max_packet_size(4 << 20, 4 << 20);
    options.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 2000);
    let reply_to = topics::reply("hostile");
    client.subscribe(&reply_to, QoS::AtLeastOnce).await.unwrap();

    let cases = cases(&reply_to);
    let expected: usize = cases.iter().filter(|c| c.replied).count();
    assert!(cases.len() >= 1000, "{} cases", cases.len());
    let sender = client.clone();
    tokio::spawn(async move {
        for case in cases {
            let topic = topics::command("registry", &case.action);
            sender
                .publish(topic, QoS::AtLeastOnce, false, case.payload)
                .await
                .unwrap();
        }
    });

    let mut replies = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while replies.len() < expected {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .unwrap_or_else(|_| panic!("only {} of {expected} replies arrived", replies.len()))
            .expect("hostile client connection");
        if let Event::Incoming(Packet::Publish(p)) = event {
            replies.push(p.payload.to_vec());
        }
    }
    // Nothing beyond the expected replies (the reply-less cases stay silent).
    let extra = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(_))) = eventloop.poll().await {
                return;
            }
        }
    })
    .await;
    assert!(
        extra.is_err(),
        "a reply arrived for a payload without a usable reply_to"
    );

    let mut ids = HashSet::new();
    for raw in &replies {
        let reply: ReplyEnvelope = serde_json::from_slice(raw).expect("reply is an envelope");
        assert!(!reply.ok, "hostile payload {} succeeded", reply.id);
        let code = serde_json::to_value(reply.error.expect("error object").code).unwrap();
        assert!(CODES.contains(&code.as_str().unwrap()));
        ids.insert(reply.id);
    }
    assert!(ids.contains("big") && ids.contains("deep"));

    // Still serving, and the store is exactly as it was.
    let after_list = admin
        .request("registry", "app.list", &json!({}))
        .await
        .expect("still serving");
    assert_eq!(after_list.as_array().unwrap().len(), 1);
    assert_eq!(snapshot(&system.database_path()).await, before);
}
