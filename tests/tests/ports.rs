//! The port allocator against a real broker, registry, host sockets and (strict)
//! a real Swarm.

use std::collections::{BTreeSet, HashSet};
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use cubeos_contract::topics;
use cubeos_kit::{Bus, ErrorCode};
use cubeos_tests::{System, require_swarm, snapshot};
use serde_json::{Value, json};

/// A block of `n` consecutive ports nobody uses right now (TCP and UDP, v4 and v6).
fn free_block(n: u16) -> u16 {
    // Tests run in parallel processes: each starts its search elsewhere, so two of
    // them do not settle on the same block at the same moment.
    let start = 21000 + (std::process::id() % 500) as u16 * 17;
    'search: for base in (start..32000).chain(21000..start).step_by(usize::from(n) + 7) {
        for p in base..base + n {
            let free = TcpListener::bind(("0.0.0.0", p)).is_ok()
                && TcpListener::bind(("::", p)).is_ok()
                && UdpSocket::bind(("0.0.0.0", p)).is_ok()
                && UdpSocket::bind(("::", p)).is_ok();
            if !free {
                continue 'search;
            }
        }
        return base;
    }
    panic!("no free block of {n} ports");
}

/// Registry + port allocator with the user range `base..base+size`, Docker at
/// `docker_socket` (a missing socket makes the Swarm check unavailable).
async fn system(base: u16, size: u16, docker_socket: &str) -> System {
    let socket = docker_socket.to_owned();
    let mut system = System::start_with(move |c| {
        c.ports.user = format!("{base}-{}", base + size - 1);
        c.docker.socket = socket.into();
    })
    .await;
    system.start_service("port-allocator").await;
    system
}

async fn app(bus: &Bus, name: &str) {
    bus.request("registry", "app.create", &json!({ "name": name }))
        .await
        .unwrap();
}

async fn allocate(bus: &Bus, args: Value) -> Result<Value, cubeos_kit::BusError> {
    bus.request("port-allocator", "allocate", &args).await
}

fn ports(reply: &Value) -> Vec<u64> {
    reply["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_bound_on_the_host_are_never_allocated() {
    let base = free_block(6);
    let system = system(base, 6, "/nonexistent/docker.sock").await;
    let bus = system.client("t").await;
    app(&bus, "web").await;
    let _tcp4 = TcpListener::bind(("127.0.0.1", base)).unwrap();
    let _tcp6 = TcpListener::bind(("::1", base + 1)).unwrap();
    let _udp4 = UdpSocket::bind(("127.0.0.1", base)).unwrap();
    let _udp6 = UdpSocket::bind(("::1", base + 1)).unwrap();

    let tcp = allocate(&bus, json!({"app": "web", "count": 2})).await.unwrap();
    assert_eq!(ports(&tcp), [u64::from(base) + 2, u64::from(base) + 3]);
    let udp = allocate(&bus, json!({"app": "web", "count": 2, "protocol": "udp"}))
        .await
        .unwrap();
    assert_eq!(ports(&udp), [u64::from(base) + 2, u64::from(base) + 3]);
    // Docker is not there: the reply says so instead of pretending.
    assert_eq!(tcp["swarm"]["status"], "unavailable", "{tcp}");

    // check names the holder: this very process.
    let check = bus
        .request("port-allocator", "check", &json!({"port": base}))
        .await
        .unwrap();
    assert_eq!(check["free"], false);
    let me = std::process::id();
    assert!(
        check["held_by"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"] == "socket" && h["pid"] == me),
        "{check}"
    );
    let check = bus
        .request("port-allocator", "check", &json!({"port": base + 2}))
        .await
        .unwrap();
    assert_eq!(check["held_by"][0], json!({"kind": "app", "app": "web"}));
    let check = bus
        .request("port-allocator", "check", &json!({"port": base + 5, "protocol": "udp"}))
        .await
        .unwrap();
    assert_eq!(
        (check["free"].clone(), check["range"].clone()),
        (json!(true), json!("user"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_allocations_from_twenty_clients_are_distinct() {
    let base = free_block(300);
    let system = system(base, 300, "/nonexistent/docker.sock").await;
    let setup = system.client("setup").await;
    for i in 0..200 {
        app(&setup, &format!("app-{i}")).await;
    }
    let mut clients = Vec::new();
    for c in 0..20 {
        clients.push(system.client(&format!("alloc-{c}")).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let bus = clients[i % 20].clone();
        tasks.spawn(async move { (i, allocate(&bus, json!({"app": format!("app-{i}")})).await.unwrap()) });
    }
    let mut got = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        let (_, reply) = done.unwrap();
        for p in ports(&reply) {
            assert!(got.insert(p), "port {p} handed out twice");
        }
    }
    assert_eq!(got.len(), 200);
    let held = setup.request("registry", "port.list", &json!({})).await.unwrap();
    let recorded: BTreeSet<u64> = held
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["port"].as_u64().unwrap())
        .collect();
    assert_eq!(
        recorded,
        got.into_iter().collect::<BTreeSet<_>>(),
        "every allocation is recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freed_ports_are_reused_and_preferences_honoured_or_explained() {
    let base = u64::from(free_block(10));
    let system = system(base as u16, 10, "/nonexistent/docker.sock").await;
    let bus = system.client("t").await;
    let mut state = bus
        .subscribe(&topics::ports_state(), rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    for name in ["a", "b", "c"] {
        app(&bus, name).await;
    }
    assert_eq!(ports(&allocate(&bus, json!({"app": "a"})).await.unwrap()), [base]);
    assert_eq!(ports(&allocate(&bus, json!({"app": "b"})).await.unwrap()), [base + 1]);
    bus.request("port-allocator", "release", &json!({"app": "a", "port": base}))
        .await
        .unwrap();
    assert_eq!(
        ports(&allocate(&bus, json!({"app": "c"})).await.unwrap()),
        [base],
        "the freed port is reused"
    );

    let preferred = allocate(&bus, json!({"app": "a", "preferred": [base + 7]}))
        .await
        .unwrap();
    assert_eq!(ports(&preferred), [base + 7]);
    assert!(preferred["notes"].as_array().unwrap().is_empty());
    let fallback = allocate(&bus, json!({"app": "a", "preferred": [base + 1]}))
        .await
        .unwrap();
    assert_eq!(ports(&fallback), [base + 2]);
    let note = fallback["notes"][0].as_str().unwrap();
    assert!(
        note.contains(&format!("preferred port {}", base + 1)) && note.contains("app 'b'"),
        "{note}"
    );

    // The retained stats follow: 4 of 10 user ports in use.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, state.recv())
            .await
            .expect("ports state")
            .unwrap();
        let stats: Value = serde_json::from_slice(&msg.payload).unwrap();
        let user = stats["tcp"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "user")
            .unwrap()
            .clone();
        if user["in_use"] == 4 {
            assert_eq!(user["free"], 6);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_range_is_a_typed_error_and_leaves_nothing_behind() {
    let base = free_block(3);
    let system = system(base, 3, "/nonexistent/docker.sock").await;
    let bus = system.client("t").await;
    app(&bus, "x").await;
    app(&bus, "y").await;
    allocate(&bus, json!({"app": "x", "count": 2})).await.unwrap();
    let e = allocate(&bus, json!({"app": "y", "count": 2})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("2 of 3 in use"), "{}", e.message);
    let held = bus
        .request("registry", "port.list", &json!({"app": "y"}))
        .await
        .unwrap();
    assert!(
        held.as_array().unwrap().is_empty(),
        "a failed allocation is undone: {held}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_input_gets_typed_errors_and_reserves_nothing() {
    let base = free_block(5);
    let system = system(base, 5, "/nonexistent/docker.sock").await;
    let bus = system.client("t").await;
    app(&bus, "ok").await;
    let before = snapshot(&system.database_path()).await;
    let cases = [
        ("allocate", json!({"app": "ok", "preferred": [-1]})),
        ("allocate", json!({"app": "ok", "preferred": [70000]})),
        ("allocate", json!({"app": "ok", "preferred": ["6100"]})),
        ("allocate", json!({"app": "ok", "count": 1_000_000})),
        ("allocate", json!({"app": "ok", "count": 0})),
        ("allocate", json!({"app": "ok", "count": "many"})),
        ("allocate", json!({"app": "ok", "protocol": "sctp"})),
        ("allocate", json!({"app": "../etc"})),
        ("allocate", json!({"app": "ghost"})),
        ("allocate", json!({"app": "ok", "extra": 1})),
        ("release", json!({"app": "ok", "port": 70000})),
        ("check", json!({"port": -5})),
        ("check", json!({"port": "http"})),
        ("available", json!({"limit": 1_000_000})),
        ("available", json!({"type": "root"})),
        ("stats", json!({"surprise": true})),
        ("explode", json!({})),
    ];
    for (action, args) in cases {
        let e = bus.request("port-allocator", action, &args).await.unwrap_err();
        assert!(
            matches!(e.code, ErrorCode::BadRequest | ErrorCode::NotFound),
            "{action} {args}: {e}"
        );
    }
    assert_eq!(snapshot(&system.database_path()).await, before, "nothing reserved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_published_by_a_swarm_service_is_not_allocated() {
    let Some(docker) = require_swarm("swarm_published_port").await else {
        return;
    };
    cubeos_tests::ensure_test_image();
    let base = free_block(4);
    let system = system(base, 4, "/var/run/docker.sock").await;
    let bus = system.client("t").await;
    app(&bus, "web").await;

    use bollard::models::*;
    let name = format!("cubeos-port-test-{base}");
    let spec = ServiceSpec {
        name: Some(name.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(cubeos_tests::TEST_IMAGE.into()),
                command: Some(vec!["sleep".into(), "600".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            ports: Some(vec![EndpointPortConfig {
                target_port: Some(80),
                published_port: Some(i64::from(base)),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker.create_service(spec, None).await.expect("service created");
    let reply = allocate(&bus, json!({"app": "web"})).await;
    let check = bus.request("port-allocator", "check", &json!({"port": base})).await;
    let _ = docker.delete_service(&name).await;
    let reply = reply.unwrap();
    assert_eq!(reply["swarm"]["status"], "checked", "{reply}");
    assert_eq!(
        ports(&reply),
        [u64::from(base) + 1],
        "the Swarm-published port is skipped"
    );
    let check = check.unwrap();
    assert!(
        check["held_by"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"] == "swarm" && h["service"] == name),
        "{check}"
    );
}
