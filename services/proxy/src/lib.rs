//! The dns/npm-proxy service: every app is reached as `<app>.<domain>`.
//!
//! For every fqdn row in the registry (and the core hosts: the domain itself for the
//! dashboard, `api.`, `pihole.`, `npm.`) it keeps a DNS record pointing at the
//! gateway and a reverse-proxy host forwarding to the app's port, with WebSocket
//! upgrades on. Backends are chosen in config (`proxy.dns`, `proxy.proxy`):
//! Pi-hole v6 and Nginx Proxy Manager on a device, dnsmasq and nginx anywhere,
//! `none` for ip:port access only ([`backend`]).
//!
//! Design: the desired state is a pure function of the registry's retained app and
//! system state ([`desired`]); each backend compares it with what it holds of its
//! own and changes only that ([`plan`]), never touching an entry a person made. A
//! pass runs on every change (debounced) and every `proxy.interval`; a failing
//! backend is retried with exponential backoff up to `proxy.max_backoff` while apps
//! keep running, and the next pass repairs whatever drifted. `cubeos/state/proxy`
//! says what each backend is, whether it is healthy, when it last synced, how many
//! drifted entries were repaired, and the last error.
//!
//! ## Commands (`cubeos/cmd/proxy/<action>`)
//!
//! | action | args | reply |
//! |---|---|---|
//! | `dns.list` | — | `{backend, entries: [{name, desired, actual, status}]}` |
//! | `proxy.list` | — | the same for proxy hosts |
//! | `sync` | — | runs a pass now; the state it publishes |

pub mod backend;
pub mod desired;
pub mod dnsmasq;
mod http;
pub mod nginx;
pub mod npm;
pub mod pihole;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cubeos_contract::api::proxy::{BackendStatus, DnsList, Entries, Entry, ProxyList, ProxyStatus, Sync};
use cubeos_contract::api::registry::FqdnSetProxyId;
use cubeos_contract::models::AppRecord;
use cubeos_contract::topics::{self, service::PROXY};
use cubeos_kit::config::{DnsBackendKind, ProxyBackendKind, ProxyConfig};
use cubeos_kit::host;
use cubeos_kit::mirror::AppMirror;
use cubeos_kit::runner::{self, Schedule, Service};
use cubeos_kit::secrets::SecretBox;
use cubeos_kit::{Bus, BusError, Config, ServiceContext};
use tokio::sync::Mutex;
use tracing::{info, warn};

use backend::{Dns, Outcome, Proxy};
use desired::{Desired, Network};

pub const SERVICE: &str = PROXY;

/// What the service knows and holds.
pub struct ProxyService {
    bus: Bus,
    config: ProxyConfig,
    /// Where `cubeos up` serves the dashboard: the domain's own host goes there.
    dashboard_port: u16,
    apps: AppMirror,
    system: std::sync::Mutex<BTreeMap<String, String>>,
    dns: Mutex<Dns>,
    proxy: Mutex<Proxy>,
    status: std::sync::Mutex<ProxyStatus>,
    last: std::sync::Mutex<Last>,
}

/// The last pass: what was wanted and what each backend reported.
#[derive(Default)]
struct Last {
    desired: Option<Desired>,
    dns: Outcome,
    proxy: Outcome,
}

impl ProxyService {
    pub fn new(bus: Bus, config: &Config) -> ProxyService {
        let key = SecretBox::load(&config.secret_key_path()).ok();
        let p = &config.proxy;
        let dns = match p.dns {
            DnsBackendKind::None => Dns::None,
            DnsBackendKind::Dnsmasq => Dns::Dnsmasq(dnsmasq::Dnsmasq::new(&p.dnsmasq, Arc::new(host::System))),
            DnsBackendKind::Pihole => Dns::Pihole(pihole::Pihole::new(&p.pihole, key.as_ref(), &config.data_dir)),
        };
        let proxy = match p.proxy {
            ProxyBackendKind::None => Proxy::None,
            ProxyBackendKind::Nginx => Proxy::Nginx(nginx::Nginx::new(&p.nginx, Arc::new(host::System))),
            ProxyBackendKind::Npm => Proxy::Npm(npm::Npm::new(&p.npm, key.as_ref())),
        };
        let status = ProxyStatus {
            dns: BackendStatus {
                backend: dns.name().into(),
                ..Default::default()
            },
            proxy: BackendStatus {
                backend: proxy.name().into(),
                ..Default::default()
            },
            ..Default::default()
        };
        ProxyService {
            bus,
            config: p.clone(),
            dashboard_port: config.dashboard.listen.port(),
            apps: AppMirror::records(),
            system: Default::default(),
            dns: Mutex::new(dns),
            proxy: Mutex::new(proxy),
            status: std::sync::Mutex::new(status),
            last: Default::default(),
        }
    }

    /// Folds one retained state message into the view; true when names may change.
    pub fn observe(&self, topic: &str, payload: &[u8]) -> bool {
        if topic == topics::system_state() {
            if let Ok(system) = serde_json::from_slice(payload) {
                *self.system.lock().unwrap_or_else(|p| p.into_inner()) = system;
                return true;
            }
            return false;
        }
        // The NPM id this service writes back is not a change of names: comparing
        // it would start a second pass after every create.
        match self.apps.observe(topic, payload) {
            Some((before, after)) => {
                before.as_ref().map(|r| desired::routing(&r.fqdns))
                    != after.as_ref().map(|r| desired::routing(&r.fqdns))
            }
            None => false,
        }
    }

    /// The desired state now, or `None` until the system's domain is known.
    pub fn desired(&self) -> Option<Desired> {
        let network = Network::from_system(&self.system.lock().unwrap_or_else(|p| p.into_inner()))?;
        Some(
            self.apps
                .read(|apps| desired::desired(apps.values(), &network, &self.config.backend_host, self.dashboard_port)),
        )
    }

    /// One reconcile pass over both backends. Ok when both are in sync.
    pub async fn pass(&self) -> Result<(), String> {
        let Some(want) = self.desired() else {
            return Err("the system's domain and gateway are not known yet".into());
        };
        let unchanged = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .desired
            .as_ref()
            .is_some_and(|last| last.same_names(&want));
        let dns = self.dns.lock().await.sync(&want).await;
        let proxy = self.proxy.lock().await.sync(&want).await;
        if let Ok(outcome) = &proxy {
            self.record_proxy_ids(&want, outcome).await;
        }
        let now = cubeos_kit::clock::rfc3339(std::time::SystemTime::now());
        let mut errors = Vec::new();
        {
            let mut status_guard = self.status.lock().unwrap_or_else(|p| p.into_inner());
            let mut last_guard = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let (status, last) = (&mut *status_guard, &mut *last_guard);
            status.passes += 1;
            let mut repaired = 0;
            for (result, slot, kept) in [
                (&dns, &mut status.dns, &mut last.dns),
                (&proxy, &mut status.proxy, &mut last.proxy),
            ] {
                match result {
                    Ok(outcome) => {
                        slot.healthy = true;
                        slot.error = None;
                        slot.last_sync = Some(now.clone());
                        slot.conflicts = outcome.conflicts.clone();
                        slot.entries = outcome.actual.len();
                        repaired += outcome.changes();
                        *kept = outcome.clone();
                    }
                    Err(e) => {
                        slot.healthy = false;
                        slot.error = Some(e.to_string());
                        errors.push(format!("{}: {e}", slot.backend));
                    }
                }
            }
            if unchanged {
                status.drift_repaired += repaired as u64;
            }
            if errors.is_empty() {
                last.desired = Some(want);
            }
        }
        self.publish().await;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Keeps `fqdns.npm_proxy_id` in step with the NPM hosts this service owns.
    async fn record_proxy_ids(&self, want: &Desired, outcome: &Outcome) {
        if self.config.proxy != ProxyBackendKind::Npm {
            return;
        }
        for (fqdn, stored) in &want.rows {
            let actual = outcome.proxy_ids.get(fqdn).copied();
            if actual != *stored {
                let args = FqdnSetProxyId {
                    fqdn: fqdn.clone(),
                    npm_proxy_id: actual,
                };
                if let Err(e) = self.bus.call(&args).await {
                    warn!(%fqdn, error = %e, "NPM proxy id not recorded");
                }
            }
        }
    }

    pub fn status(&self) -> ProxyStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn publish(&self) {
        let status = self.status();
        if let Err(e) = self.bus.publish_state(&topics::proxy_state(), &status).await {
            warn!(error = %e, "proxy state not published");
        }
    }

    /// Desired against actual, per name, for one backend.
    pub fn entries(&self, dns: bool) -> Entries {
        let want = self.desired().unwrap_or_default();
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let status = self.status();
        let (outcome, slot) = if dns {
            (&last.dns, &status.dns)
        } else {
            (&last.proxy, &status.proxy)
        };
        let desired: BTreeMap<String, String> = if dns {
            want.records.iter().map(|(n, ip)| (n.clone(), ip.to_string())).collect()
        } else {
            want.routes
                .iter()
                .map(|(n, r)| (n.clone(), format!("{}:{}", r.host, r.port)))
                .collect()
        };
        let mut names: Vec<&String> = desired.keys().chain(outcome.actual.keys()).collect();
        names.sort();
        names.dedup();
        let entries: Vec<Entry> = names
            .into_iter()
            .map(|name| {
                let (d, a) = (desired.get(name), outcome.actual.get(name));
                let status = if slot.conflicts.contains(name) {
                    "conflict"
                } else {
                    match (d, a) {
                        (Some(d), Some(a)) if d == a => "ok",
                        (Some(_), Some(_)) => "different",
                        (Some(_), None) => "missing",
                        (None, _) => "extra",
                    }
                };
                Entry {
                    name: name.clone(),
                    desired: d.cloned(),
                    actual: a.cloned(),
                    status: status.into(),
                }
            })
            .collect();
        Entries {
            backend: slot.backend.clone(),
            healthy: slot.healthy,
            error: slot.error.clone(),
            entries,
        }
    }
}

/// The service's entry point.
pub async fn run(ctx: ServiceContext) -> anyhow::Result<()> {
    let service = ProxyService::new(ctx.bus.clone(), &ctx.config);
    runner::run(ctx, Arc::new(service)).await
}

impl Service for ProxyService {
    const NAME: &'static str = PROXY;

    fn bind(self: &Arc<Self>, bus: &Bus) {
        bus.bind(
            self,
            |s, _, _: DnsList| async move { Ok::<_, BusError>(s.entries(true)) },
        );
        bus.bind(
            self,
            |s, _, _: ProxyList| async move { Ok::<_, BusError>(s.entries(false)) },
        );
        bus.bind(self, |s, _, _: Sync| async move {
            let result = s.pass().await;
            result.map(|_| s.status()).map_err(BusError::unavailable)
        });
    }

    fn follows(&self) -> Vec<String> {
        vec![AppMirror::<AppRecord>::filter(), topics::system_state()]
    }

    fn observe(&self, topic: &str, payload: &[u8]) -> bool {
        ProxyService::observe(self, topic, payload)
    }

    /// Changes arrive in bursts (an install adds a row, then updates it): one
    /// pass after the burst settles; a failing backend is retried with backoff
    /// while apps keep running.
    fn schedule(&self) -> Schedule {
        Schedule {
            interval: self.config.interval,
            settle: Duration::from_millis(150),
            max_backoff: self.config.max_backoff,
        }
    }

    async fn ready(self: &Arc<Self>) {
        self.publish().await;
        let status = self.status();
        info!(dns = status.dns.backend, proxy = status.proxy.backend, "proxy backends");
    }

    async fn react(self: &Arc<Self>) -> Result<(), String> {
        self.pass().await
    }
}
