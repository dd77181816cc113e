//! Real third-party clients against the real broker and registry: mosquitto_pub /
//! mosquitto_sub over TCP, MQTT.js (the dashboard's library) over WebSocket.

use std::path::PathBuf;
use std::process::Stdio;

use cubeos_contract::topics;
use cubeos_tests::{System, require, skip_unless};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_creates_an_app_and_sees_its_retained_state() {
    if !require("mosquitto_creates_an_app", "mosquitto_pub") || !require("mosquitto_creates_an_app", "mosquitto_sub") {
        return;
    }
    let system = System::start().await;
    let auth = system.mosquitto_args();
    let reply_topic = topics::reply("mosq-test");

    // Listen for the reply first (`-d` prints the SUBACK; stdbuf makes the pipe
    // line-buffered so it arrives at once), then send the command envelope.
    let mut listener = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub"])
        .args(&auth)
        .args(["-d", "-t", &reply_topic, "-C", "1", "-W", "10"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_sub");
    let mut lines = BufReader::new(listener.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.contains("received SUBACK") {
            break;
        }
    }
    let envelope = json!({
        "id": "req-1",
        "reply_to": reply_topic,
        "args": {
            "name": "filebrowser",
            "display_name": "File Browser",
            "ports": [{"port": 6100, "is_primary": true}],
            "fqdns": [{"fqdn": "filebrowser.cubeos.cube", "backend_port": 6100}]
        }
    });
    let status = Command::new("mosquitto_pub")
        .args(&auth)
        .args([
            "-q",
            "1",
            "-t",
            &topics::command("registry", "app.create"),
            "-m",
            &envelope.to_string(),
        ])
        .status()
        .await
        .expect("mosquitto_pub");
    assert!(status.success());
    let mut reply = Value::Null;
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.starts_with('{') {
            reply = serde_json::from_str(&line).expect("reply is JSON");
            break;
        }
    }
    assert_eq!(reply["id"], "req-1");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"]["name"], "filebrowser");
    assert_eq!(reply["data"]["ports"][0]["port"], 6100);

    // A subscriber that arrives afterwards sees the app's retained state.
    let out = Command::new("mosquitto_sub")
        .args(&auth)
        .args(["-t", "cubeos/state/#", "-v", "-W", "5", "--retained-only", "-C", "6"])
        .output()
        .await
        .expect("mosquitto_sub");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{} ", topics::app_state("filebrowser"))))
        .unwrap_or_else(|| panic!("no retained app state in:\n{text}"));
    let state: Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
    assert_eq!(state["display_name"], "File Browser");
    assert_eq!(state["fqdns"][0]["fqdn"], "filebrowser.cubeos.cube");
    assert!(text.contains("cubeos/state/system "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_retained_topics_reach_a_fresh_wildcard_subscriber() {
    if !require("two_thousand_retained_topics", "mosquitto_sub") {
        return;
    }
    let system = System::start().await;
    const APPS: usize = 2000;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let bus = system.client(&format!("filler-{worker}")).await;
        tasks.spawn(async move {
            for i in (worker..APPS).step_by(16) {
                bus.request("registry", "app.create", &json!({ "name": format!("app-{i:04}") }))
                    .await
                    .expect("create");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("filler");
    }
    // 2,000 apps + 3 profiles + the system object + the broker's report.
    let expected = APPS + 5;
    let out = Command::new("mosquitto_sub")
        .args(system.mosquitto_args())
        .args([
            "-t",
            "cubeos/state/#",
            "-v",
            "-W",
            "20",
            "--retained-only",
            "-C",
            &expected.to_string(),
        ])
        .output()
        .await
        .expect("mosquitto_sub");
    let text = String::from_utf8_lossy(&out.stdout);
    let topics: std::collections::BTreeSet<&str> = text.lines().filter_map(|l| l.split(' ').next()).collect();
    let apps = topics.iter().filter(|t| t.starts_with("cubeos/state/apps/")).count();
    assert_eq!(apps, APPS, "app state topics delivered");
    assert_eq!(topics.len(), expected);
}

/// The dashboard's client library, MQTT.js, over WebSocket (tests/js).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_js_round_trip_over_websocket() {
    let js = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js");
    let installed = js.join("node_modules/mqtt").is_dir();
    if !require("mqtt_js_round_trip", "node")
        || !skip_unless(
            "mqtt_js_round_trip",
            installed,
            "MQTT.js is not installed (npm ci --prefix tests/js)",
        )
    {
        return;
    }
    let system = System::start().await;
    system.add_user("dash", "dashboard-pw", "admin").await;
    let admin = system.client("seed").await;
    for name in ["alpha", "beta"] {
        admin
            .request("registry", "app.create", &json!({ "name": name }))
            .await
            .expect("seed app");
    }
    let run = |topic: String, args: Value| {
        let js = js.clone();
        let url = format!("ws://127.0.0.1:{}", system.ws_port());
        let (user, pass) = ("dash".to_string(), "dashboard-pw".to_string());
        async move {
            Command::new("node")
                .arg(js.join("ws_request.mjs"))
                .args(["--url", &url, "--username", &user, "--password", &pass])
                .args(["--topic", &topic, "--args", &args.to_string(), "--timeout-ms", "10000"])
                .args(["--retained-filter", "cubeos/state/apps/#", "--expect-retained", "2"])
                .output()
                .await
                .expect("node")
        }
    };
    let out = run(topics::command("registry", "app.list"), json!({})).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let reply: Value = serde_json::from_str(lines.next().expect("reply line")).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    let names: Vec<&str> = reply["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    let retained: Value = serde_json::from_str(lines.next().expect("retained line")).unwrap();
    assert_eq!(retained["retained_count"], 2);

    // Errors come back typed over WebSocket too.
    let out = run(topics::command("registry", "app.create"), json!({ "name": "../etc" })).await;
    let reply: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"]["code"], "bad_request");

    // Wrong password: refused.
    let out = Command::new("node")
        .arg(js.join("ws_request.mjs"))
        .args([
            "--url",
            &format!("ws://127.0.0.1:{}", system.ws_port()),
            "--username",
            "dash",
        ])
        .args([
            "--password",
            "wrong",
            "--topic",
            "cubeos/cmd/registry/app.list",
            "--args",
            "{}",
            "--timeout-ms",
            "3000",
        ])
        .output()
        .await
        .expect("node");
    assert!(!out.status.success());
}
