//! The dns/npm-proxy service against real dnsmasq and nginx on loopback ports
//! (issue 7): names resolve and proxy, WebSocket upgrades pass, a broken nginx
//! configuration never reaches a reload, and a person's files are left alone.

use std::time::Duration;

use cubeos_tests::servers::{Backend, Dnsmasq, Nginx, upgrade_through};
use cubeos_tests::{System, require};
use serde_json::{Value, json};

/// Waits until `check` holds, polling.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolve_and_proxy_through_dnsmasq_and_nginx() {
    for tool in ["dnsmasq", "nginx", "dig", "curl"] {
        if !require("names_resolve_and_proxy", tool) {
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let dns = Dnsmasq::start(dir.path());
    let web = Nginx::start(dir.path());
    let mut system = System::start_with(|c| {
        dns.configure(c);
        web.configure(c);
        c.proxy.interval = Duration::from_secs(3600);
    })
    .await;
    system.start_service("proxy").await;
    let wiki = Backend::start("hello from wiki").await;
    // A person's own server block, and a look-alike without the marker.
    std::fs::write(web.conf_dir.join("my-own.conf"), "# mine\n").unwrap();
    std::fs::write(web.conf_dir.join("cubeos-handmade.conf"), "# also mine\n").unwrap();

    let bus = system.client("t").await;
    bus.request(
        "registry",
        "app.create",
        &json!({ "name": "wiki", "fqdns": [{ "fqdn": "wiki.cubeos.cube", "backend_port": wiki.port }] }),
    )
    .await
    .unwrap();
    eventually("wiki resolves", || dns.dig("wiki.cubeos.cube").1 == ["10.42.24.1"]).await;
    let (status, answers) = dns.dig("cubeos.cube");
    assert_eq!(
        (status.as_str(), answers),
        ("NOERROR", vec!["10.42.24.1".to_string()]),
        "a core host"
    );
    eventually("wiki proxies", || {
        web.get("wiki.cubeos.cube") == (200, "hello from wiki".into())
    })
    .await;
    // An earlier reload may still be retiring the worker that served the GET: retry
    // until a current worker takes the upgrade.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut echoed = upgrade_through(web.port, "wiki.cubeos.cube", b"ping").await;
    while echoed != b"ping" && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        echoed = upgrade_through(web.port, "wiki.cubeos.cube", b"ping").await;
    }
    assert_eq!(echoed, b"ping", "WebSocket upgrade");

    // desired against actual, as `cubeos dns ls` shows it.
    let listed = bus.request("proxy", "dns.list", &json!({})).await.unwrap();
    let row = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "wiki.cubeos.cube")
        .cloned()
        .unwrap();
    assert_eq!(row["status"], "ok", "{listed}");

    // A broken file of someone else's: nginx -t fails, nginx is not reloaded, and the
    // service's own change is rolled back; everything served before still is.
    std::fs::write(web.conf_dir.join("zz-broken.conf"), "this is not nginx;\n").unwrap();
    let docs = Backend::start("hello from docs").await;
    bus.request(
        "registry",
        "fqdn.add",
        &json!({ "app": "wiki", "fqdn": "docs.cubeos.cube", "backend_port": docs.port }),
    )
    .await
    .unwrap();
    let err = bus.request("proxy", "sync", &json!({})).await.unwrap_err();
    assert!(err.message.contains("nginx -t failed"), "{err}");
    let state = bus.request("proxy", "proxy.list", &json!({})).await.unwrap();
    assert_eq!(state["healthy"], false, "{state}");
    assert!(
        !web.conf_dir.join("cubeos-docs.cubeos.cube.conf").exists(),
        "rolled back"
    );
    assert_eq!(web.get("wiki.cubeos.cube"), (200, "hello from wiki".into()));
    assert_ne!(web.get("docs.cubeos.cube").1, "hello from docs");
    // DNS does not wait for nginx (dnsmasq rereads its hosts on SIGHUP, a moment later).
    eventually("docs resolves", || dns.dig("docs.cubeos.cube").1 == ["10.42.24.1"]).await;

    std::fs::remove_file(web.conf_dir.join("zz-broken.conf")).unwrap();
    bus.request("proxy", "sync", &json!({}))
        .await
        .expect("repaired on the next pass");
    // A reload is a signal: new workers take over a moment later.
    eventually("docs proxies", || {
        web.get("docs.cubeos.cube") == (200, "hello from docs".into())
    })
    .await;

    // Removal: NXDOMAIN and no proxy; the person's files are untouched.
    bus.request("registry", "app.delete", &json!({ "name": "wiki" }))
        .await
        .unwrap();
    eventually("wiki is gone from DNS", || dns.dig("wiki.cubeos.cube").0 == "NXDOMAIN").await;
    eventually("wiki is gone from nginx", || web.get("wiki.cubeos.cube").0 == 404).await;
    assert_eq!(
        std::fs::read_to_string(web.conf_dir.join("my-own.conf")).unwrap(),
        "# mine\n"
    );
    assert_eq!(
        std::fs::read_to_string(web.conf_dir.join("cubeos-handmade.conf")).unwrap(),
        "# also mine\n"
    );
    let state: Value = bus.request("proxy", "sync", &json!({})).await.unwrap();
    assert_eq!(state["dns"]["backend"], "dnsmasq");
    assert_eq!(state["proxy"]["healthy"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_dnsmasq_is_reported_and_repaired_later() {
    if !require("stopped_dnsmasq", "dnsmasq") || !require("stopped_dnsmasq", "dig") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dns = Dnsmasq::start(dir.path());
    let hosts_file = dns.hosts_file.clone();
    let mut system = System::start_with(|c| {
        dns.configure(c);
        c.proxy.interval = Duration::from_secs(3600);
    })
    .await;
    drop(dns);
    system.start_service("proxy").await;
    let bus = system.client("t").await;
    let err = bus.request("proxy", "sync", &json!({})).await.unwrap_err();
    assert_eq!(err.code, cubeos_kit::ErrorCode::Unavailable, "{err}");
    let listed = bus.request("proxy", "dns.list", &json!({})).await.unwrap();
    assert_eq!(listed["healthy"], false);
    assert!(listed["error"].as_str().unwrap().contains("dnsmasq"), "{listed}");
    // The hosts file is written anyway: a dnsmasq started later reads it.
    assert!(std::fs::read_to_string(&hosts_file).unwrap().contains("cubeos.cube"));

    // dnsmasq comes back (same files): the next pass repairs, and says so.
    let dns = Dnsmasq::start(dir.path());
    let state = bus.request("proxy", "sync", &json!({})).await.expect("healthy again");
    assert_eq!(state["dns"]["healthy"], true, "{state}");
    assert_eq!(dns.dig("cubeos.cube").1, ["10.42.24.1"]);
}
