//! Gate benchmark: what the gate adds. In one run, against one broker and registry:
//!
//! - command round trip (`state.get`) straight to rumqttd on loopback (baseline)
//!   and through the gate, signed in as a user, one at a time: p50 / p99 and ratio;
//! - messages per second from a publisher to a loopback subscriber, publishing
//!   straight to rumqttd (baseline) and through the gate as a hardware device.
//!
//! Run: `cargo bench -p cubeos --bench gate` (release build); `cargo test` runs
//! it short.

use std::time::{Duration, Instant};

use cubeos_contract::api::registry::StateGet;
use cubeos_kit::Bus;
use cubeos_tests::{System, bench};
use rumqttc::QoS;
use serde_json::json;

/// Sequential `state.get` round trips per path.
fn round_trip_count() -> usize {
    bench::scaled(2000, 50)
}

/// Messages per throughput run.
fn message_count() -> usize {
    bench::scaled(20_000, 500)
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99))
}

async fn round_trips(bus: &Bus) -> (Duration, Duration) {
    let args = StateGet {
        key: Some("domain".into()),
    };
    for _ in 0..bench::scaled(100, 5) {
        bus.call(&args).await.unwrap();
    }
    let count = round_trip_count();
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        bus.call(&args).await.unwrap();
        samples.push(t.elapsed());
    }
    percentiles(samples)
}

/// Publishes [`message_count`] messages to `topic` from `publisher` and returns the rate at which a
/// loopback subscriber received them (all of them, or the run fails).
async fn throughput(observer: &Bus, publisher: &Bus, topic: &str) -> f64 {
    let messages = message_count();
    let mut inbox = observer.subscribe(topic, QoS::AtMostOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let sender = publisher.clone();
    let owned = topic.to_owned();
    let send = tokio::spawn(async move {
        for i in 0..messages {
            sender.publish_event(&owned, &json!({ "n": i })).await.unwrap();
            // Stay under the broker's per-filter log (segment x count): the point is
            // the steady rate, not how deep a burst rumqttd can buffer.
            if i % 500 == 499 {
                tokio::task::yield_now().await;
            }
        }
    });
    let mut received = 0;
    while received < messages {
        match tokio::time::timeout(Duration::from_secs(10), inbox.recv()).await {
            Ok(Some(_)) => received += 1,
            _ => break,
        }
    }
    let elapsed = start.elapsed();
    send.await.unwrap();
    assert!(received >= messages * 99 / 100, "only {received} of {messages} arrived");
    received as f64 / elapsed.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    bench::announce("gate");
    let system = System::start_with(|c| c.log.level = "error".into()).await;
    system.add_user("bench", "bench-password", "user").await;
    let direct = system.client("bench-direct").await;
    let gated = system
        .gate_client("bench-gated", "bench", "bench-password")
        .await
        .unwrap();

    let (d50, d99) = round_trips(&direct).await;
    let (g50, g99) = round_trips(&gated).await;
    println!("command round trip, {} sequential state.get:", round_trip_count());
    println!("  straight to rumqttd (baseline): p50 {d50:?}  p99 {d99:?}");
    println!(
        "  through the gate:               p50 {g50:?} (x{:.2})  p99 {g99:?} (x{:.2})",
        g50.as_secs_f64() / d50.as_secs_f64(),
        g99.as_secs_f64() / d99.as_secs_f64()
    );
    println!("  added by the gate at p50: {:?}", g50.saturating_sub(d50));

    let mut issued = direct
        .request(
            "registry",
            "token.issue",
            &json!({ "kind": "device", "id": "bench-dev" }),
        )
        .await
        .unwrap();
    system.secrets().open_fields(&mut issued);
    let token = issued["token"].as_str().map(str::to_owned).unwrap_or_default();
    let device = system.gate_client("bench-device", "bench-dev", &token).await.unwrap();
    let observer = system.client("bench-observer").await;
    let base = throughput(&observer, &direct, "cubeos/hw/bench-dev/direct").await;
    let through = throughput(&observer, &device, "cubeos/hw/bench-dev/gated").await;
    println!(
        "messages/s, {} QoS 0 publishes to a loopback subscriber:",
        message_count()
    );
    println!("  straight to rumqttd (baseline): {base:.0}/s");
    println!(
        "  through the gate (device):      {through:.0}/s (x{:.2})",
        through / base
    );
}
