//! The registry keeps its retained state topics true: on every change, on delete,
//! and after a reconnect to a broker that has lost everything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cubeos_contract::topics;
use cubeos_kit::bus::Message;
use cubeos_kit::service::Shutdown;
use cubeos_kit::{Bus, BusOptions, ServiceContext};
use cubeos_tests::{Proxy, System, free_port, test_config, wait_for_registry};
use rumqttc::QoS;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

/// Collects messages until `done` holds for the latest value per topic.
async fn until(
    rx: &mut UnboundedReceiver<Message>,
    seen: &mut BTreeMap<String, Vec<u8>>,
    done: impl Fn(&BTreeMap<String, Vec<u8>>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(seen) {
        let msg = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("state never converged; saw {:?}", seen.keys().collect::<Vec<_>>()))
            .expect("subscription open");
        seen.insert(msg.topic, msg.payload);
    }
}

fn json_of(seen: &BTreeMap<String, Vec<u8>>, topic: &str) -> Option<Value> {
    seen.get(topic)
        .filter(|p| !p.is_empty())
        .and_then(|p| serde_json::from_slice(p).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_follows_every_change_and_clears_on_delete() {
    let system = System::start().await;
    let bus = system.client("watcher").await;
    let mut rx = bus.subscribe(&topics::all_state(), QoS::AtMostOnce).await.unwrap();
    let mut seen = BTreeMap::new();
    let app = topics::app_state("notes");
    let minimal = topics::profile_state("minimal");

    bus.request("registry", "app.create", &json!({"name": "notes"}))
        .await
        .unwrap();
    until(&mut rx, &mut seen, |s| json_of(s, &app).is_some()).await;

    bus.request("registry", "port.reserve", &json!({"app": "notes", "port": 6190}))
        .await
        .unwrap();
    until(&mut rx, &mut seen, |s| {
        json_of(s, &app).is_some_and(|v| v["ports"][0]["port"] == 6190)
    })
    .await;

    bus.request(
        "registry",
        "fqdn.add",
        &json!({"app": "notes", "fqdn": "notes.cubeos.cube", "backend_port": 6190}),
    )
    .await
    .unwrap();
    until(&mut rx, &mut seen, |s| {
        json_of(s, &app).is_some_and(|v| v["fqdns"][0]["fqdn"] == "notes.cubeos.cube")
    })
    .await;

    bus.request("registry", "app.update", &json!({"name": "notes", "enabled": false}))
        .await
        .unwrap();
    until(&mut rx, &mut seen, |s| {
        json_of(s, &app).is_some_and(|v| v["enabled"] == false)
    })
    .await;

    bus.request(
        "registry",
        "profile.set_apps",
        &json!({"name": "minimal", "apps": {"notes": true}}),
    )
    .await
    .unwrap();
    until(&mut rx, &mut seen, |s| {
        json_of(s, &minimal).is_some_and(|v| v["apps"]["notes"] == true)
    })
    .await;

    bus.request("registry", "state.set", &json!({"key": "domain", "value": "home.cube"}))
        .await
        .unwrap();
    until(&mut rx, &mut seen, |s| {
        json_of(s, &topics::system_state()).is_some_and(|v| v["domain"] == "home.cube")
    })
    .await;

    bus.request("registry", "app.delete", &json!({"name": "notes"}))
        .await
        .unwrap();
    until(&mut rx, &mut seen, |s| {
        s.get(&app).is_some_and(|p| p.is_empty())
            && json_of(s, &minimal).is_some_and(|v| v["apps"].as_object().unwrap().is_empty())
    })
    .await;

    // A fresh subscriber no longer gets the deleted app at all.
    let late = system.client("late").await;
    let mut rx = late.subscribe(&topics::all_state(), QoS::AtMostOnce).await.unwrap();
    let mut fresh = BTreeMap::new();
    until(&mut rx, &mut fresh, |s| {
        s.contains_key(&topics::system_state()) && s.len() >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(m) = rx.try_recv() {
        fresh.insert(m.topic, m.payload);
    }
    assert!(!fresh.contains_key(&app), "deleted app still retained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_reconnect_to_an_empty_broker_the_registry_republishes_and_resubscribes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    cubeos_kit::telemetry::init(&config.log);
    let credentials = cubeos_broker::Credentials::load_or_create(&config.credentials_path()).unwrap();
    let broker_a = config.broker.tcp_listen;
    cubeos_broker::start(&config, &credentials).unwrap();
    let proxy = Proxy::start(broker_a).await;
    config.broker.address = proxy.addr;
    let config = Arc::new(config);

    let options = |client: &str, addr: SocketAddr| {
        let mut o = BusOptions::new(&config, client, &credentials.username, &credentials.password);
        o.address = addr;
        o
    };
    let registry_bus = Bus::connect(options("registry", proxy.addr).for_service("registry"))
        .await
        .unwrap();
    let (_trigger, shutdown) = Shutdown::new();
    tokio::spawn(cubeos_registry::run(ServiceContext {
        config: Arc::clone(&config),
        bus: registry_bus,
        shutdown,
    }));

    let on_a = Bus::connect(options("client-a", broker_a)).await.unwrap();
    wait_for_registry(&on_a).await;
    on_a.request("registry", "app.create", &json!({"name": "survivor"}))
        .await
        .unwrap();
    let mut status_a = on_a
        .subscribe(&topics::service_status("registry"), QoS::AtMostOnce)
        .await
        .unwrap();

    // Broker B knows nothing. Move the registry there by cutting its connection.
    let mut config_b = (*config).clone();
    config_b.broker.tcp_listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    cubeos_broker::start(&config_b, &credentials).unwrap();
    proxy.set_target(config_b.broker.tcp_listen);
    proxy.cut();

    // Broker A publishes the registry's last will.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, status_a.recv())
            .await
            .expect("last will")
            .unwrap();
        if msg.payload == b"offline" {
            break;
        }
    }

    let on_b = Bus::connect(options("client-b", config_b.broker.tcp_listen))
        .await
        .unwrap();
    wait_for_registry(&on_b).await; // commands resubscribed
    let mut rx = on_b.subscribe("cubeos/#", QoS::AtMostOnce).await.unwrap();
    let mut seen = BTreeMap::new();
    until(&mut rx, &mut seen, |s| {
        json_of(s, &topics::app_state("survivor")).is_some()
            && json_of(s, &topics::system_state()).is_some()
            && json_of(s, &topics::profile_state("offline")).is_some()
            && s.get(&topics::service_status("registry"))
                .is_some_and(|p| p == b"online")
    })
    .await;
    on_b.request("registry", "app.create", &json!({"name": "after-move"}))
        .await
        .expect("serving on B");
}
