//! Reconcile benchmark (issue 7): one pass with 200 fqdns, when nothing changes and
//! when everything does (every backend port moves), for each pair of backends:
//! dnsmasq + nginx for real (`nginx -t` and a reload included), and Pi-hole + NPM
//! through their contract servers (HTTP on loopback).
//!
//! Run: `cargo bench -p cubeos-proxy --bench reconcile` (release build);
//! `cargo test` runs it short (and skips it without nginx, unless strict).

use std::time::{Duration, Instant};

use cubeos_contract::models::AppRecord;
use cubeos_kit::Config;
use cubeos_proxy::backend::{Dns, Proxy};
use cubeos_proxy::desired::{Desired, Network, desired};
use cubeos_proxy::{dnsmasq, nginx, npm, pihole};
use cubeos_tests::fakes::{FakeNpm, FakePihole};
use cubeos_tests::servers::Nginx;
use cubeos_tests::{bench, require};

/// How many apps (one fqdn each) the desired state holds.
fn names() -> usize {
    bench::scaled(200, 20)
}

/// Passes per measurement.
fn rounds() -> usize {
    bench::scaled(5, 3)
}

fn apps(port_base: i64) -> Vec<AppRecord> {
    (0..names())
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "id": i, "name": format!("app-{i}"), "display_name": "", "description": "", "type": "user",
                "category": "other", "source": "custom", "store_id": null, "compose_path": "",
                "data_path": "", "enabled": true, "tor_enabled": false, "vpn_enabled": false,
                "icon_url": "", "version": "", "homepage": "", "created_at": "", "updated_at": "",
                "ports": [],
                "fqdns": [{ "id": i, "app_id": i, "fqdn": format!("app-{i}.cubeos.cube"), "subdomain": format!("app-{i}"),
                            "backend_port": port_base + i as i64, "ssl_enabled": false, "npm_proxy_id": null, "created_at": "" }]
            }))
            .unwrap()
        })
        .collect()
}

fn wanted(port_base: i64) -> Desired {
    let network = Network {
        domain: "cubeos.cube".into(),
        gateway: "10.42.24.1".parse().unwrap(),
    };
    desired(&apps(port_base), &network, "127.0.0.1", 6011)
}

/// Median of [`rounds`] passes of `dns` then `proxy` against `want(round)`.
async fn passes(dns: &mut Dns, proxy: &mut Proxy, want: impl Fn(usize) -> Desired) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut changes = 0;
    for round in 0..rounds() {
        let want = want(round);
        let t = Instant::now();
        let d = dns.sync(&want).await.expect("dns pass");
        let p = proxy.sync(&want).await.expect("proxy pass");
        times.push(t.elapsed());
        changes = d.changes() + p.changes();
    }
    times.sort();
    (times[times.len() / 2], changes)
}

async fn bench(label: &str, dns: &mut Dns, proxy: &mut Proxy) {
    // First fill: every name created.
    let t = Instant::now();
    dns.sync(&wanted(6100)).await.expect("dns fill");
    proxy.sync(&wanted(6100)).await.expect("proxy fill");
    let fill = t.elapsed();
    let (nothing, n0) = passes(dns, proxy, |_| wanted(6100)).await;
    let (everything, n1) = passes(dns, proxy, |round| wanted(if round % 2 == 0 { 16100 } else { 6100 })).await;
    println!(
        "{label}, {} fqdns (+4 core hosts), median of {} passes:",
        names(),
        rounds()
    );
    println!("  first fill (all created):          {fill:?}");
    println!("  nothing to change ({n0} changes):    {nothing:?}");
    println!(
        "  everything to change ({n1} changes): {everything:?}  (x{:.1} the no-op pass)",
        everything.as_secs_f64() / nothing.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    bench::announce("reconcile");
    if !require("reconcile bench", "nginx") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A process that stands in for dnsmasq's pid: it ignores the SIGHUPs.
    let mut hup_sink = std::process::Command::new("sh")
        .args(["-c", "trap '' HUP; exec sleep 600"])
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("dnsmasq.pid");
    std::fs::write(&pid_file, hup_sink.id().to_string()).unwrap();
    let web = Nginx::start(dir.path());
    let mut config = Config::default();
    config.proxy.dnsmasq.hosts_file = dir.path().join("hosts");
    config.proxy.dnsmasq.pid_file = pid_file;
    web.configure(&mut config);
    let system = std::sync::Arc::new(cubeos_kit::host::System);
    let mut dns = Dns::Dnsmasq(dnsmasq::Dnsmasq::new(&config.proxy.dnsmasq, system.clone()));
    let mut proxy = Proxy::Nginx(nginx::Nginx::new(&config.proxy.nginx, system));
    bench("dnsmasq + nginx (real nginx -t and reload)", &mut dns, &mut proxy).await;

    let hole = FakePihole::start("pw", Duration::from_secs(300)).await;
    let manager = FakeNpm::start("admin@cubeos.cube", "pw", Duration::from_secs(3600)).await;
    config.proxy.pihole.url = hole.url();
    config.proxy.pihole.password = "pw".into();
    config.proxy.npm.url = manager.url();
    config.proxy.npm.email = "admin@cubeos.cube".into();
    config.proxy.npm.password = "pw".into();
    let mut dns = Dns::Pihole(pihole::Pihole::new(&config.proxy.pihole, None, dir.path()));
    let mut proxy = Proxy::Npm(npm::Npm::new(&config.proxy.npm, None));
    bench(
        "Pi-hole + NPM (contract servers over loopback HTTP)",
        &mut dns,
        &mut proxy,
    )
    .await;
    let _ = hup_sink.kill();
    let _ = hup_sink.wait();
}
