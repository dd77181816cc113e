//! The proxy service against Pi-hole v6 and Nginx Proxy Manager (issue 7). Neither
//! can run here, so each is a contract server that enforces the documented API
//! (`cubeos_tests::fakes`): sign-in and session expiry, drift repaired, orphans
//! removed, a person's own entries left alone, a backend down and back.

use std::time::Duration;

use cubeos_kit::ErrorCode;
use cubeos_kit::config::{DnsBackendKind, ProxyBackendKind};
use cubeos_tests::System;
use cubeos_tests::fakes::{FakeNpm, FakePihole};
use serde_json::{Value, json};

const EMAIL: &str = "admin@cubeos.cube";

/// Registry and proxy service against these two fakes, signing in with these
/// passwords; passes run only when asked (`sync`).
async fn proxied(hole: &FakePihole, manager: &FakeNpm, hole_password: &str, npm_password: &str) -> System {
    let (hole_url, npm_url) = (hole.url(), manager.url());
    let (hole_password, npm_password) = (hole_password.to_owned(), npm_password.to_owned());
    let mut system = System::start_with(move |c| {
        c.proxy.dns = DnsBackendKind::Pihole;
        c.proxy.proxy = ProxyBackendKind::Npm;
        c.proxy.interval = Duration::from_secs(3600);
        c.proxy.pihole.url = hole_url;
        c.proxy.pihole.password = hole_password.into();
        c.proxy.npm.url = npm_url;
        c.proxy.npm.email = EMAIL.into();
        c.proxy.npm.password = npm_password.into();
    })
    .await;
    system.start_service("proxy").await;
    system
}

fn npm_host<'a>(hosts: &'a [Value], name: &str) -> Option<&'a Value> {
    hosts.iter().find(|h| h["domain_names"][0] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pihole_and_npm_are_kept_in_step() {
    let hole = FakePihole::start("hole-password", Duration::from_secs(300)).await;
    let manager = FakeNpm::start(EMAIL, "npm-password", Duration::from_secs(3600)).await;
    // A person's own entries, one of them for a name CubeOS will want.
    hole.add_host("192.168.1.5 nas.cubeos.cube");
    hole.add_host("192.168.1.9 grafana.cubeos.cube");
    let nas = manager.insert_host(json!({
        "domain_names": ["nas.cubeos.cube"], "forward_scheme": "http",
        "forward_host": "192.168.1.5", "forward_port": 5000
    }));
    let system = proxied(&hole, &manager, "hole-password", "npm-password").await;
    let bus = system.client("t").await;
    bus.request(
        "registry",
        "app.create",
        &json!({ "name": "wiki", "fqdns": [{ "fqdn": "wiki.cubeos.cube", "backend_port": 6150 }] }),
    )
    .await
    .unwrap();
    let state = bus.request("proxy", "sync", &json!({})).await.expect("in step");
    assert_eq!(state["dns"]["healthy"], true, "{state}");
    assert!(hole.hosts().contains(&"10.42.24.1 wiki.cubeos.cube".to_string()));
    assert!(
        hole.hosts().contains(&"10.42.24.1 cubeos.cube".to_string()),
        "core host"
    );
    let hosts = manager.hosts();
    let wiki = npm_host(&hosts, "wiki.cubeos.cube").expect("proxy host").clone();
    assert_eq!(
        (wiki["forward_host"].as_str(), wiki["forward_port"].as_i64()),
        (Some("127.0.0.1"), Some(6150))
    );
    assert_eq!(wiki["allow_websocket_upgrade"], true);
    // The registry records NPM's id for the row.
    let app = bus
        .request("registry", "app.get", &json!({ "name": "wiki" }))
        .await
        .unwrap();
    assert_eq!(app["fqdns"][0]["npm_proxy_id"], wiki["id"], "{app}");

    // Sessions expire: the next pass signs in again and carries on.
    let (hole_logins, npm_logins) = (hole.meter().logins(), manager.meter().logins());
    hole.expire_sessions();
    manager.expire_tokens();
    bus.request("proxy", "sync", &json!({})).await.expect("after expiry");
    assert!(hole.meter().logins() > hole_logins && manager.meter().logins() > npm_logins);

    // Drift: entries deleted behind our back are recreated, and counted.
    assert!(hole.remove_host("10.42.24.1 wiki.cubeos.cube"));
    assert!(manager.delete_host(wiki["id"].as_i64().unwrap()));
    let state = bus.request("proxy", "sync", &json!({})).await.unwrap();
    assert!(state["drift_repaired"].as_u64().unwrap() >= 2, "{state}");
    assert!(hole.hosts().contains(&"10.42.24.1 wiki.cubeos.cube".to_string()));
    let recreated = npm_host(&manager.hosts(), "wiki.cubeos.cube")
        .cloned()
        .expect("recreated");
    let app = bus
        .request("registry", "app.get", &json!({ "name": "wiki" }))
        .await
        .unwrap();
    assert_eq!(
        app["fqdns"][0]["npm_proxy_id"], recreated["id"],
        "the new id is recorded"
    );

    // A name a person's entry holds is reported, not overwritten.
    bus.request(
        "registry",
        "app.create",
        &json!({ "name": "grafana", "fqdns": [{ "fqdn": "grafana.cubeos.cube", "backend_port": 6151 }] }),
    )
    .await
    .unwrap();
    bus.request("proxy", "sync", &json!({})).await.unwrap();
    let listed = bus.request("proxy", "dns.list", &json!({})).await.unwrap();
    let grafana = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "grafana.cubeos.cube")
        .cloned()
        .unwrap();
    assert_eq!(grafana["status"], "conflict", "{listed}");
    assert!(!hole.hosts().iter().any(|h| h == "10.42.24.1 grafana.cubeos.cube"));

    // Orphans: a removed app's entries go; the person's stay.
    bus.request("registry", "app.delete", &json!({ "name": "wiki" }))
        .await
        .unwrap();
    bus.request("proxy", "sync", &json!({})).await.unwrap();
    assert!(!hole.hosts().iter().any(|h| h.ends_with(" wiki.cubeos.cube")));
    assert!(npm_host(&manager.hosts(), "wiki.cubeos.cube").is_none());
    assert!(hole.hosts().contains(&"192.168.1.5 nas.cubeos.cube".to_string()));
    assert!(hole.hosts().contains(&"192.168.1.9 grafana.cubeos.cube".to_string()));
    assert!(manager.hosts().iter().any(|h| h["id"] == nas), "the person's NPM host");

    // Down: reported, and repaired once back.
    hole.meter().set_down(true);
    let err = bus.request("proxy", "sync", &json!({})).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    let listed = bus.request("proxy", "dns.list", &json!({})).await.unwrap();
    assert_eq!(listed["healthy"], false);
    hole.meter().set_down(false);
    let state = bus.request("proxy", "sync", &json!({})).await.expect("back");
    assert_eq!(state["dns"]["healthy"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_api_credentials_are_reported_without_the_password() {
    let hole = FakePihole::start("right", Duration::from_secs(300)).await;
    let manager = FakeNpm::start(EMAIL, "right", Duration::from_secs(3600)).await;
    let system = proxied(&hole, &manager, "wrong-hole-pw", "wrong-npm-pw").await;
    let bus = system.client("t").await;
    let err = bus.request("proxy", "sync", &json!({})).await.unwrap_err();
    assert!(err.message.contains("pihole refused our credentials"), "{err}");
    assert!(err.message.contains("npm refused our credentials"), "{err}");
    assert!(!err.message.contains("wrong-"), "{err}");
    assert!(hole.hosts().is_empty() && manager.hosts().is_empty());
}

/// NPM releases refuse a stale token differently (401, 400 "Token has expired", 403,
/// a 404 for a missing one, 500 for a foreign one): the client signs in again for
/// each, and a bad password is a credentials error in each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_npm_release_is_followed_through_token_expiry() {
    use cubeos_proxy::backend::{BackendError, Proxy};
    use cubeos_proxy::desired::{Network, desired};
    use cubeos_tests::fakes::NpmFlavor;
    let network = Network {
        domain: "cubeos.cube".into(),
        gateway: "10.42.24.1".parse().unwrap(),
    };
    let want = desired(std::iter::empty(), &network, "127.0.0.1", 6011);
    for flavor in [NpmFlavor::V2_12, NpmFlavor::V2_15, NpmFlavor::Develop] {
        let manager = FakeNpm::start(EMAIL, "right", Duration::from_secs(3600)).await;
        manager.set_flavor(flavor);
        let mut config = cubeos_kit::config::NpmConfig {
            url: manager.url(),
            email: EMAIL.into(),
            password: "right".into(),
        };
        let mut proxy = Proxy::Npm(cubeos_proxy::npm::Npm::new(&config, None));
        let first = proxy.sync(&want).await.unwrap_or_else(|e| panic!("{flavor:?}: {e}"));
        assert_eq!(first.created, want.routes.len(), "{flavor:?}");
        manager.expire_tokens();
        let logins = manager.meter().logins();
        let again = proxy
            .sync(&want)
            .await
            .unwrap_or_else(|e| panic!("{flavor:?} after expiry: {e}"));
        assert_eq!(again.changes(), 0, "{flavor:?}");
        assert_eq!(manager.meter().logins(), logins + 1, "{flavor:?}: signed in again");
        config.password = "wrong".into();
        let mut wrong = Proxy::Npm(cubeos_proxy::npm::Npm::new(&config, None));
        assert!(
            matches!(wrong.sync(&want).await, Err(BackendError::Auth(_))),
            "{flavor:?}"
        );
    }
}
