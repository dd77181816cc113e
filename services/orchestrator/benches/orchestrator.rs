//! Install to converged for 1 and for 10 apps on a real Swarm, and the
//! reconciler's diff for 1,000 apps against 1,000 services.
//!
//! Run: `cargo bench -p cubeos-orchestrator --bench orchestrator` (needs Docker in
//! Swarm mode and the busybox test image; the diff part runs regardless);
//! `cargo test` runs it short.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bollard::models::{ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated};
use cubeos_contract::topics;
use cubeos_kit::Bus;
use cubeos_orchestrator::reconcile::{Actual, Desired, diff};
use cubeos_orchestrator::stack::StackSpec;
use cubeos_tests::{System, TEST_IMAGE, bench, ensure_test_image, skip_unless};
use serde_json::{Value, json};

fn web(name: &str) -> String {
    format!(
        "services:\n  web:\n    image: {TEST_IMAGE}\n    command: [\"httpd\", \"-f\", \"-p\", \"80\"]\n    ports: ['80']\n    volumes: ['./www:/www']\n# {name}\n"
    )
}

async fn install(bus: &Bus, name: &str) {
    let mut events = bus
        .subscribe(&topics::app_progress(name), rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    bus.request(
        "orchestrator",
        "install",
        &json!({ "compose": web(name), "name": name }),
    )
    .await
    .unwrap();
    while let Some(msg) = events.recv().await {
        let event: Value = serde_json::from_slice(&msg.payload).unwrap();
        match event["status"].as_str() {
            Some("done") => return,
            Some("failed") => panic!("{name}: {event}"),
            _ => {}
        }
    }
}

fn synthetic(n: usize) -> (Vec<Desired>, Vec<Actual>, Vec<Actual>) {
    let mut desired = Vec::with_capacity(n);
    let mut converged = Vec::with_capacity(n);
    let mut drifted = Vec::with_capacity(n);
    for i in 0..n {
        let app = format!("app{i}");
        let service = format!("{app}_web");
        let spec = ServiceSpec {
            name: Some(service.clone()),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            ..Default::default()
        };
        desired.push(Desired {
            app: app.clone(),
            run: true,
            stack: Some(StackSpec {
                name: app.clone(),
                services: vec![spec],
                ..Default::default()
            }),
        });
        converged.push(Actual {
            service: service.clone(),
            stack: app.clone(),
            replicas: Some(1),
        });
        // Every third scaled wrong, every third missing, every third an orphan.
        match i % 3 {
            0 => drifted.push(Actual {
                service,
                stack: app,
                replicas: Some(0),
            }),
            1 => {}
            _ => drifted.push(Actual {
                service: format!("gone{i}_web"),
                stack: format!("gone{i}"),
                replicas: Some(1),
            }),
        }
    }
    (desired, converged, drifted)
}

fn time_diff(desired: &[Desired], actual: &[Actual]) -> (Duration, usize) {
    let busy = HashSet::new();
    let rounds = bench::scaled(200, 5);
    let mut samples = Vec::with_capacity(rounds);
    let mut actions = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        actions = std::hint::black_box(diff(desired, actual, &busy)).len();
        samples.push(t.elapsed());
    }
    samples.sort();
    (samples[rounds / 2], actions)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    bench::announce("orchestrator");
    let many = if bench::short() { 2 } else { 10 };
    let (desired, converged, drifted) = synthetic(1000);
    let (t, n) = time_diff(&desired, &converged);
    println!(
        "reconciler diff, 1,000 apps vs 1,000 services, nothing to do: median {:.0} us ({n} actions)",
        t.as_secs_f64() * 1e6
    );
    let (t, n) = time_diff(&desired, &drifted);
    println!(
        "reconciler diff, 1,000 apps vs drifted services: median {:.0} us ({n} actions)",
        t.as_secs_f64() * 1e6
    );

    let docker = cubeos_kit::docker::connect(&Default::default()).await.is_ok();
    if !skip_unless("orchestrator bench, install to converged", docker, "no Docker daemon") {
        return;
    }
    ensure_test_image();
    let base = 30000;
    let mut system = System::start_with(move |c| c.ports.user = format!("{base}-{}", base + 99)).await;
    system.start_service("port-allocator").await;
    system.start_service("orchestrator").await;
    let bus = system.client("bench").await;

    let t = Instant::now();
    install(&bus, "bench0").await;
    let one = t.elapsed();
    let t = Instant::now();
    let mut jobs = tokio::task::JoinSet::new();
    for i in 1..=many {
        let bus = bus.clone();
        jobs.spawn(async move { install(&bus, &format!("bench{i}")).await });
    }
    while let Some(done) = jobs.join_next().await {
        done.unwrap();
    }
    let ten = t.elapsed();
    println!(
        "install -> converged: 1 app {:.1} s; {many} apps at once {:.1} s",
        one.as_secs_f64(),
        ten.as_secs_f64()
    );
    for i in 0..=many {
        let _ = bus
            .request("orchestrator", "remove", &json!({ "name": format!("bench{i}") }))
            .await;
    }
}
