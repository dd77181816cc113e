//! The port allocator: hands out ports that are free everywhere, reuses freed ones
//! and explains every conflict.
//!
//! "Free" means free in the store, not bound by a live TCP/UDP socket on the host
//! (IPv4 and IPv6, from `/proc/net`), and not published by a Swarm service (when
//! Docker is reachable; replies say when it was not). Candidates are the preferred
//! ports (when allowed and free), then the app type's range from its lowest port —
//! unlike the seed's `MAX(port)+1`, a freed port is reused and a full tail does not
//! hide free ports below it. The registry's `UNIQUE(port, protocol)` stays the
//! arbiter: a `conflict` on reserve moves on to the next candidate.
//!
//! ## Commands (`cubeos/cmd/port-allocator/<action>`)
//!
//! | action | args | reply |
//! |---|---|---|
//! | `allocate` | `app`, `protocol?` (tcp), `count?` (1-64), `preferred?: [port]`, `type?` (the app's) | `{app, protocol, ports, notes, swarm}` |
//! | `release` | `app`, `port?`, `protocol?` | `{released}` (all of the app's ports without `port`) |
//! | `check` | `port`, `protocol?` | `{port, protocol, free, range, reserved, held_by, swarm}` |
//! | `available` | `type?` (user), `protocol?`, `limit?` (20, at most 1000) | `{type, protocol, ports, swarm}` |
//! | `stats` | — | per range `{type, start, end, in_use, free}` for tcp and udp |
//!
//! Publishes retained `cubeos/state/ports` (the stats) at start, whenever an app's
//! state changes (the registry republishes an app on every reservation and
//! release, so this covers changes made by anyone; bursts are coalesced), and
//! every `ports.refresh_interval`.

pub mod occupancy;
pub mod ranges;
pub mod swarm;

use std::path::PathBuf;
use std::sync::Arc;

use cubeos_contract::api::port_allocator::{
    Allocate, Allocated, Available, AvailablePorts, Check, Holder, PortCheck, PortStats, Release, Stats,
};
use cubeos_contract::api::registry::{AppGet, PortList, PortRelease, PortReserve, PortSpec, Released};
use cubeos_contract::models::{AppRecord, AppType, Protocol};
use cubeos_contract::topics::{self, service::PORT_ALLOCATOR};
use cubeos_contract::validate;
use cubeos_kit::config::DockerConfig;
use cubeos_kit::docker::DockerLink;
use cubeos_kit::mirror::AppMirror;
use cubeos_kit::runner::{self, Schedule, Service};
use cubeos_kit::{Bus, BusError, ErrorCode, ServiceContext, procnet};
use serde_json::json;
use tokio::sync::Mutex;
use tracing::warn;

use occupancy::{Occupancy, candidates, describe, stats};
use ranges::Ranges;

pub const SERVICE: &str = PORT_ALLOCATOR;

/// How long a burst of app changes may last before the stats are recomputed.
const STATS_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(200);

/// Most ports one allocation may ask for.
pub const MAX_COUNT: i64 = 64;

pub struct Allocator {
    bus: Bus,
    ranges: Ranges,
    /// Connected on first use and kept; while Docker is unreachable (or its
    /// services cannot be listed), asked again at most every `DOCKER_RETRY`.
    docker: DockerLink,
    proc_root: PathBuf,
    /// Every app's type and ports, kept from the registry's retained app states:
    /// allocations read it instead of asking for every reservation each time. A
    /// stale view only costs a `conflict` from the registry, after which the
    /// allocation re-reads the store.
    known: AppMirror<KnownApp>,
    /// The host's socket tables, re-read at most every `HOST_SNAPSHOT_TTL` for
    /// allocations (each chosen port is also probed with a bind right before it
    /// is reserved, so a socket that appeared since is still seen).
    host_snapshot: std::sync::Mutex<Option<(std::time::Instant, procnet::Bound)>>,
    /// One allocation at a time: concurrent callers would otherwise all race for
    /// the same lowest port and retry.
    lock: Mutex<()>,
    /// How often the stats are published unprompted.
    refresh: std::time::Duration,
}

/// How long a reading of the host's socket tables serves allocations.
const HOST_SNAPSHOT_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// How long an unreachable Docker is believed down before the next attempt.
const DOCKER_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// What the allocator keeps of an app.
#[derive(Debug, Clone)]
struct KnownApp {
    app_type: AppType,
    ports: Vec<(u16, Protocol)>,
}

impl KnownApp {
    /// An app's type and ports, from its record.
    fn of(record: AppRecord) -> KnownApp {
        KnownApp {
            app_type: record.app.app_type,
            ports: record
                .ports
                .iter()
                .filter_map(|p| Some((u16::try_from(p.port).ok()?, p.protocol)))
                .collect(),
        }
    }
}

impl Allocator {
    pub fn new(bus: Bus, ranges: Ranges, docker: DockerConfig, refresh: std::time::Duration) -> Self {
        Allocator {
            bus,
            ranges,
            docker: DockerLink::new(docker, DOCKER_RETRY),
            proc_root: PathBuf::from("/proc"),
            known: AppMirror::new(KnownApp::of),
            host_snapshot: std::sync::Mutex::new(None),
            lock: Mutex::new(()),
            refresh,
        }
    }

    fn known_type(&self, app: &str) -> Option<AppType> {
        self.known.get(app).map(|k| k.app_type)
    }

    /// Reads reservations (from what the registry published, or with `fresh` from
    /// the store itself), the host's sockets and Swarm.
    pub async fn occupancy(&self, fresh: bool) -> Result<Occupancy, BusError> {
        let mut occ = Occupancy::default();
        if fresh {
            for held in self.bus.call(&PortList::default()).await? {
                if let Ok(port) = u16::try_from(held.allocation.port) {
                    occ.db.insert((port, held.allocation.protocol), held.app);
                }
            }
        } else {
            self.known.read(|apps| {
                for (app, k) in apps {
                    occ.db.extend(k.ports.iter().map(|key| (*key, app.clone())));
                }
            });
        }
        occ.host = self.host_sockets(fresh);
        match self.swarm_ports().await {
            Ok(published) => occ.swarm = Some(published),
            Err(reason) => occ.swarm_error = Some(reason),
        }
        Ok(occ)
    }

    fn host_sockets(&self, fresh: bool) -> procnet::Bound {
        let mut snapshot = self.host_snapshot.lock().unwrap_or_else(|p| p.into_inner());
        match &*snapshot {
            Some((at, bound)) if !fresh && at.elapsed() < HOST_SNAPSHOT_TTL => bound.clone(),
            _ => {
                let bound = procnet::bound_ports(&self.proc_root);
                *snapshot = Some((std::time::Instant::now(), bound.clone()));
                bound
            }
        }
    }

    async fn swarm_ports(&self) -> Result<swarm::Published, String> {
        let docker = self.docker.get().await.map_err(|e| e.message)?;
        match swarm::published_ports(&docker).await {
            Ok(published) => Ok(published),
            Err(e) => {
                let reason = format!("Swarm services could not be listed: {e}");
                self.docker.failed(BusError::unavailable(reason.clone())).await;
                Err(reason)
            }
        }
    }

    async fn allocate(&self, args: Allocate) -> Result<Allocated, BusError> {
        validate::name("app", &args.app)?;
        let count = args.count.unwrap_or(1);
        if !(1..=MAX_COUNT).contains(&count) {
            return Err(BusError::bad_request(format!(
                "count: {count} is not between 1 and {MAX_COUNT}"
            )));
        }
        let preferred: Vec<u16> = args
            .preferred
            .iter()
            .map(|p| validate::port("preferred", *p))
            .collect::<Result<_, _>>()?;
        let protocol = args.protocol.unwrap_or(Protocol::Tcp);
        let app_type = match args.app_type.or_else(|| self.known_type(&args.app)) {
            Some(t) => t,
            None => self.bus.call(&AppGet { name: args.app.clone() }).await?.app.app_type,
        };

        let _one_at_a_time = self.lock.lock().await;
        let mut occ = self.occupancy(false).await?;
        let (mut queue, mut notes) = candidates(&self.ranges, app_type, protocol, &preferred, &occ);
        let mut got: Vec<u16> = Vec::new();
        let mut reread = false;
        let mut next = 0;
        while (got.len() as i64) < count && next < queue.len() {
            let port = queue[next];
            next += 1;
            if !procnet::bindable(port, protocol) {
                notes.push(format!("{port}/{protocol} was bound on the host meanwhile"));
                continue;
            }
            let primary = got.is_empty() && preferred.first() == Some(&port);
            let reserve = PortReserve {
                app: args.app.clone(),
                spec: PortSpec {
                    port: i64::from(port),
                    protocol: Some(protocol),
                    description: None,
                    is_primary: Some(primary),
                },
            };
            match self.bus.call(&reserve).await {
                Ok(_) => {
                    got.push(port);
                    self.remember(&args.app, app_type, port, protocol);
                }
                // The view was stale (or someone was quicker): the registry is the
                // arbiter. Re-read the store once and go on from there.
                Err(e) if e.code == ErrorCode::Conflict => {
                    notes.push(format!("{port}/{protocol} was taken meanwhile: {}", e.message));
                    if !reread {
                        reread = true;
                        occ = self.occupancy(true).await?;
                        let (fresh, _) = candidates(&self.ranges, app_type, protocol, &[], &occ);
                        queue = fresh.into_iter().filter(|p| !got.contains(p)).collect();
                        next = 0;
                    }
                }
                Err(e) => {
                    self.undo(&args.app, &got, protocol).await;
                    return Err(e);
                }
            }
        }
        if (got.len() as i64) < count {
            self.undo(&args.app, &got, protocol).await;
            let range = self.ranges.range(app_type);
            let in_use = range.ports().filter(|p| occ.taken(*p, protocol)).count();
            return Err(BusError::unavailable(format!(
                "no {count} free {protocol} port(s) in the {} range {}-{}: {in_use} of {} in use",
                app_type.as_str(),
                range.start,
                range.end,
                range.len()
            ))
            .with_details(json!({ "in_use": in_use, "size": range.len(), "swarm": occ.swarm_check() })));
        }
        Ok(Allocated {
            app: args.app,
            protocol,
            ports: got,
            notes,
            swarm: occ.swarm_check(),
        })
    }

    fn remember(&self, app: &str, app_type: AppType, port: u16, protocol: Protocol) {
        let new = || KnownApp {
            app_type,
            ports: Vec::new(),
        };
        self.known.upsert(app, new, |k| k.ports.push((port, protocol)));
    }

    async fn undo(&self, app: &str, ports: &[u16], protocol: Protocol) {
        for port in ports {
            let release = PortRelease {
                app: app.to_owned(),
                port: Some(i64::from(*port)),
                protocol: Some(protocol),
            };
            if let Err(e) = self.bus.call(&release).await {
                warn!(app, port, error = %e, "could not undo a partial allocation");
            }
        }
    }

    async fn release(&self, args: Release) -> Result<Released, BusError> {
        validate::name("app", &args.app)?;
        if let Some(p) = args.port {
            validate::port("port", p)?;
        }
        let reply = self
            .bus
            .call(&PortRelease {
                app: args.app.clone(),
                port: args.port,
                protocol: args.protocol,
            })
            .await?;
        // Forget them now: the registry's state update follows, but a caller may
        // allocate again before it arrives.
        let released: Vec<(u16, Protocol)> = reply
            .released
            .iter()
            .filter_map(|r| Some((u16::try_from(r.port).ok()?, r.protocol)))
            .collect();
        self.known
            .update(&args.app, |k| k.ports.retain(|p| !released.contains(p)));
        Ok(reply)
    }

    async fn check(&self, args: Check) -> Result<PortCheck, BusError> {
        let port = validate::port("port", args.port)?;
        let protocol = args.protocol.unwrap_or(Protocol::Tcp);
        let occ = self.occupancy(true).await?;
        let key = (port, protocol);
        let mut held_by = Vec::new();
        if let Some(app) = occ.db.get(&key) {
            held_by.push(Holder::App { app: app.clone() });
        }
        if let Some(inodes) = occ.host.get(&key) {
            let holders = procnet::holders(&self.proc_root, inodes);
            if holders.is_empty() {
                held_by.push(Holder::Socket {
                    pid: None,
                    process: None,
                });
            }
            for h in holders {
                held_by.push(Holder::Socket {
                    pid: Some(h.pid),
                    process: Some(h.process),
                });
            }
        }
        if let Some(service) = occ.swarm.as_ref().and_then(|s| s.get(&key)) {
            held_by.push(Holder::Swarm {
                service: service.clone(),
            });
        }
        Ok(PortCheck {
            port,
            protocol,
            free: held_by.is_empty(),
            range: self.ranges.type_of(port).map(str::to_owned),
            reserved: self.ranges.reserved.contains(&port),
            held_by,
            summary: describe(port, protocol, &occ),
            swarm: occ.swarm_check(),
        })
    }

    async fn available(&self, args: Available) -> Result<AvailablePorts, BusError> {
        let limit = args.limit.unwrap_or(20);
        if !(1..=1000).contains(&limit) {
            return Err(BusError::bad_request(format!(
                "limit: {limit} is not between 1 and 1000"
            )));
        }
        let app_type = args.app_type.unwrap_or(AppType::User);
        let protocol = args.protocol.unwrap_or(Protocol::Tcp);
        let occ = self.occupancy(false).await?;
        let (ports, _) = candidates(&self.ranges, app_type, protocol, &[], &occ);
        let ports: Vec<u16> = ports.into_iter().take(limit as usize).collect();
        Ok(AvailablePorts {
            app_type,
            protocol,
            ports,
            swarm: occ.swarm_check(),
        })
    }

    async fn stats(&self) -> Result<PortStats, BusError> {
        let occ = self.occupancy(false).await?;
        Ok(PortStats {
            tcp: stats(&self.ranges, &occ, Protocol::Tcp),
            udp: stats(&self.ranges, &occ, Protocol::Udp),
            swarm: occ.swarm_check(),
        })
    }

    /// Recomputes and publishes `cubeos/state/ports`.
    pub async fn publish_stats(&self) {
        match self.stats().await {
            Ok(s) => {
                if let Err(e) = self.bus.publish_state(&topics::ports_state(), &s).await {
                    warn!(error = %e, "ports state not sent");
                }
            }
            Err(e) => warn!(error = %e, "ports state not computed"),
        }
    }
}

/// The port allocator's entry point.
pub async fn run(ctx: ServiceContext) -> anyhow::Result<()> {
    let ranges = Ranges::from_config(&ctx.config.ports).map_err(anyhow::Error::msg)?;
    let allocator = Allocator::new(
        ctx.bus.clone(),
        ranges,
        ctx.config.docker.clone(),
        ctx.config.ports.refresh_interval,
    );
    runner::run(ctx, Arc::new(allocator)).await
}

impl Service for Allocator {
    const NAME: &'static str = PORT_ALLOCATOR;

    fn bind(self: &Arc<Self>, bus: &Bus) {
        bus.bind(self, |a, _, args: Allocate| async move { a.allocate(args).await });
        bus.bind(self, |a, _, args: Release| async move { a.release(args).await });
        bus.bind(self, |a, _, args: Check| async move { a.check(args).await });
        bus.bind(self, |a, _, args: Available| async move { a.available(args).await });
        bus.bind(self, |a, _, _: Stats| async move { a.stats().await });
    }

    /// The registry republishes an app on every reservation and release, so the
    /// app states cover changes made by anyone.
    fn follows(&self) -> Vec<String> {
        vec![AppMirror::<KnownApp>::filter()]
    }

    fn observe(&self, topic: &str, payload: &[u8]) -> bool {
        self.known.observe(topic, payload).is_some()
    }

    /// App changes update the view at once; the stats they change are published
    /// once per burst.
    fn schedule(&self) -> Schedule {
        Schedule {
            interval: self.refresh,
            settle: STATS_DEBOUNCE,
            max_backoff: self.refresh,
        }
    }

    async fn react(self: &Arc<Self>) -> Result<(), String> {
        self.publish_stats().await;
        Ok(())
    }
}
