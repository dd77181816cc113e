//! Churn benchmark: the RSS of `cubeos up` (release binary when run by `cargo
//! bench`) as clients come and go, and of mosquitto 2 put through the same
//! connection churn by the same harness in the same run.
//!
//! Phases, each printed against the fresh figure: fresh; after the first admin's
//! setup; after CLI calls; after gate clients that each sign in with a session
//! token, call one command and leave; after a burst on a device topic; after
//! idling. mosquitto gets the same connections (connect, subscribe a reply topic
//! of its own id, publish one message, leave) and the same burst; it has no
//! commands and no sign-in, so its figures are the floor a broker alone costs.
//!
//! Not measured yet: WebSocket sessions (issue 13 part 6 asks for 1,000).
//!
//! Run: `cargo bench -p cubeos --bench churn`; `cargo test` runs it short.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use cubeos_tests::{bench, free_port};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use support::{Guard, Up, run};

fn cli_calls() -> usize {
    bench::scaled(10_000, 50)
}
fn gate_clients() -> usize {
    bench::scaled(10_000, 50)
}
fn burst() -> usize {
    bench::scaled(100_000, 1000)
}
fn idle() -> Duration {
    if bench::short() {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(600)
    }
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// One printed row per phase, against the fresh figure.
struct Table {
    fresh: Option<u64>,
}

impl Table {
    fn row(&mut self, who: &str, phase: &str, rss: u64) {
        let fresh = *self.fresh.get_or_insert(rss);
        let mb = rss as f64 / 1048576.0;
        println!(
            "  {who:<10} {phase:<40} {mb:>7.1} MB  x{:.2} of fresh",
            rss as f64 / fresh as f64
        );
    }
}

/// Connects, waits for CONNACK, subscribes `topic`, publishes one message, leaves.
async fn one_client(port: u16, id: &str, login: Option<(&str, &str)>, command: Option<&str>) -> bool {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    if let Some((user, secret)) = login {
        options.set_credentials(user, secret);
    }
    let (client, mut events) = AsyncClient::new(options, 8);
    let reply = format!("cubeos/reply/{id}");
    let _ = client.subscribe(&reply, QoS::AtMostOnce).await;
    let payload = match command {
        Some(_) => json!({ "id": "1", "reply_to": reply, "args": { "key": "domain" } }).to_string(),
        None => "hello".to_owned(),
    };
    let topic = command.unwrap_or("cubeos/hw/churn/ping");
    let _ = client.publish(topic, QoS::AtMostOnce, false, payload).await;
    let done = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == reply => return true,
                Ok(Event::Incoming(Packet::SubAck(_))) if command.is_none() => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while events.poll().await.is_ok() {}
    })
    .await;
    done.unwrap_or(false)
}

/// `count` messages on one device connection.
async fn burst_on(port: u16, login: Option<(&str, &str)>, count: usize) {
    let mut options = MqttOptions::new("churn-burst", "127.0.0.1", port);
    options.set_request_channel_capacity(4096);
    if let Some((user, secret)) = login {
        options.set_credentials(user, secret);
    }
    let (client, mut events) = AsyncClient::new(options, 4096);
    let pump = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    for i in 0..count {
        let _ = client
            .publish("cubeos/hw/churn/reading", QoS::AtMostOnce, false, vec![b'x'; 256])
            .await;
        if i % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    pump.abort();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    bench::announce("churn");
    println!(
        "RSS under churn ({} CLI calls, {} gate clients, {} x 256 B burst, {:?} idle):",
        cli_calls(),
        gate_clients(),
        burst(),
        idle()
    );
    let up = Up::start(&[]);
    let pid = up.process.0.id();
    let mut table = Table { fresh: None };
    table.row("cubeos up", "fresh", rss_of(pid));
    let mut setup = up.cli();
    setup
        .args(["setup", "--username", "admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = setup.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"churn-password-1\n").unwrap();
    assert!(child.wait().unwrap().success());
    let after_setup = rss_of(pid);
    table.row("cubeos up", "after setup", after_setup);
    for _ in 0..cli_calls() {
        let out = run(up.cli().args(["state", "get", "domain"]));
        assert!(out.status.success());
    }
    table.row("cubeos up", &format!("after {} CLI calls", cli_calls()), rss_of(pid));
    // A session token, so each gate client signs in without an argon2id hash.
    let admin = cubeos_kit::Bus::connect({
        let mut o = cubeos_kit::BusOptions::new(
            &cubeos_kit::Config::default(),
            "churn-admin",
            "admin",
            "churn-password-1",
        );
        o.address = ([127, 0, 0, 1], up.gate).into();
        o
    })
    .await
    .unwrap();
    let session = admin
        .request(
            "registry",
            "auth.login",
            &json!({ "username": "admin", "password": "churn-password-1" }),
        )
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap_or_default().to_owned();
    admin.shutdown().await;
    let mut answered = 0;
    for i in 0..gate_clients() {
        let id = format!("churn-{i}");
        answered += usize::from(
            one_client(
                up.gate,
                &id,
                Some(("admin", &token)),
                Some("cubeos/cmd/registry/state.get"),
            )
            .await,
        );
    }
    assert_eq!(answered, gate_clients(), "every gate client's command was answered");
    table.row(
        "cubeos up",
        &format!("after {} gate clients", gate_clients()),
        rss_of(pid),
    );
    burst_on(up.gate, Some(("admin", &token)), burst()).await;
    table.row(
        "cubeos up",
        &format!("after a {}-message device burst", burst()),
        rss_of(pid),
    );
    tokio::time::sleep(idle()).await;
    let idled = rss_of(pid);
    table.row("cubeos up", &format!("after {:?} idle", idle()), idled);
    println!(
        "  cubeos up after idling: x{:.2} of the post-setup figure",
        idled as f64 / after_setup as f64
    );

    if !cubeos_tests::require("churn bench (mosquitto)", "mosquitto") {
        return;
    }
    let port = free_port();
    let mosquitto = Guard(
        Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mpid = mosquitto.0.id();
    let mut table = Table { fresh: None };
    table.row("mosquitto", "fresh", rss_of(mpid));
    for i in 0..cli_calls() + gate_clients() {
        one_client(port, &format!("churn-{i}"), None, None).await;
    }
    table.row(
        "mosquitto",
        &format!("after {} connections", cli_calls() + gate_clients()),
        rss_of(mpid),
    );
    burst_on(port, None, burst()).await;
    table.row("mosquitto", &format!("after a {}-message burst", burst()), rss_of(mpid));
}
