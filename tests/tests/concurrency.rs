//! Concurrent writers against the one-writer registry.

use cubeos_kit::ErrorCode;
use cubeos_tests::System;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_reservations_of_one_port_have_one_winner() {
    let system = System::start().await;
    let setup = system.client("setup").await;
    for i in 0..50 {
        setup
            .request("registry", "app.create", &json!({ "name": format!("racer-{i}") }))
            .await
            .unwrap();
    }
    let mut clients = Vec::new();
    for c in 0..10 {
        clients.push(system.client(&format!("racer-client-{c}")).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let bus = clients[i % clients.len()].clone();
        tasks.spawn(async move {
            let args = json!({ "app": format!("racer-{i}"), "port": 6500, "protocol": "tcp" });
            (i, bus.request("registry", "port.reserve", &args).await)
        });
    }
    let mut winners = Vec::new();
    let mut conflicts = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            (i, Ok(_)) => winners.push(format!("racer-{i}")),
            (_, Err(e)) => conflicts.push(e),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one reservation wins");
    assert_eq!(conflicts.len(), 49);
    for e in &conflicts {
        assert_eq!(e.code, ErrorCode::Conflict, "{e}");
        assert_eq!(
            e.details.as_ref().unwrap()["app"],
            winners[0],
            "the conflict names the holder"
        );
    }
    let held = setup.request("registry", "port.list", &json!({})).await.unwrap();
    assert_eq!(held.as_array().unwrap().len(), 1);
    assert_eq!(held[0]["app"], winners[0]);
}

/// A burst far deeper than the broker's 16 KiB command log (about 100 commands):
/// rumqttd hands commands on to the registry's connection as it routes them, so
/// a short log loses none as long as the registry reads. Counted, not timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_is_lost_in_a_burst_of_thirty_thousand() {
    const BURST: usize = 30_000;
    let system = System::start_with(|c| c.bus.request_timeout = std::time::Duration::from_secs(120)).await;
    let mut clients = Vec::new();
    for c in 0..10 {
        clients.push(system.client(&format!("burst-{c}")).await);
    }
    let args = cubeos_contract::api::registry::StateGet {
        key: Some("domain".into()),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..BURST {
        let (bus, args) = (clients[i % clients.len()].clone(), args.clone());
        tasks.spawn(async move { bus.call(&args).await.is_ok() });
    }
    let mut answered = 0;
    while let Some(done) = tasks.join_next().await {
        answered += usize::from(done.unwrap());
    }
    // On failure, say which subscribers fell behind (the broker's own report).
    let broker = system.client("burst-observer").await;
    let mut state = broker
        .subscribe(&cubeos_contract::topics::broker_state(), rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    let report = tokio::time::timeout(std::time::Duration::from_secs(3), state.recv()).await;
    let report = report
        .ok()
        .flatten()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned());
    assert_eq!(
        answered, BURST,
        "every command of the burst is answered; broker: {report:?}"
    );
}
