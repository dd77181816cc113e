//! The embedded MQTT broker every CubeOS service talks through.
//!
//! rumqttd 0.20 runs in-process on its own threads, with one TCP listener on
//! loopback for the services. It requires the service credentials, generated on
//! first start and kept in the data dir with mode 0600 ([`credentials`]).
//!
//! Everyone else — the dashboard over WebSocket, a CLI on another machine, hardware
//! devices, node agents — connects to the [`gate`], which authenticates them, applies
//! the per-role topic policy and forwards what passes to rumqttd.
//!
//! # Bounded memory (issue 13)
//! rumqttd 0.20 keeps an in-memory log for every distinct subscription filter it
//! ever saw, a record per client id it ever saw, and never frees either. So the
//! design keeps both sets fixed by configuration, whoever connects:
//! - **Reply topics.** The CLI on the box leases one of `bus.cli_slots` client ids
//!   (`cli-0` ..; `cubeos_kit::slots`, an `flock` per slot), so it adds at most that
//!   many reply filters. Outside clients never subscribe their reply topic at
//!   rumqttd: the gate sends their commands on its own connection, receives every
//!   reply on its one reply topic and hands each to the connection that asked, by
//!   correlation id, on `cubeos/reply/<their id>`.
//! - **Outside subscriptions.** The gate keeps each client's filters itself (at
//!   most `gate.max_subscriptions`) and subscribes the client's upstream connection
//!   only to whole roots (`cubeos/state/#`, `cubeos/events/#`, `cubeos/svc/#`,
//!   `cubeos/hw/#`, `cubeos/nodes/#`), matching what arrives against the client's
//!   filters. rumqttd sees five filters from outside, however many clients come
//!   and whatever they ask for; upstream client ids come from a pool as large as
//!   the most connections ever open at once.
//! - **Published messages.** rumqttd keeps a logged message as a slice of the
//!   10 KiB read buffer it arrived in. What outside clients publish is relayed on
//!   the gate's one busy connection, where many messages share a buffer.
//! - **Logs.** Each kind of filter has a small log ([`logs`]), so the worst case
//!   (every filter full) is a sum stated in the README.
//! - **Slow subscribers** that fall a log behind lose QoS 0 messages; [`lag`]
//!   makes that visible.
//!
//! Besides: a fresh QoS 0 wildcard subscriber receives at most
//! `router.max_outgoing_packet_count` retained messages, so that is set above the
//! number of state topics a box can have (`broker.max_outgoing_packet_count`).
//!
//! rumqttd has no topic ACLs and drops a failed login without a CONNACK code: hence
//! the gate (DESIGN.md section 5).

pub mod credentials;
pub mod gate;
pub mod lag;
pub mod logs;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use std::path::Path;

use cubeos_contract::models::Protocol;
use cubeos_kit::Config;
use cubeos_kit::config::BrokerConfig;
use cubeos_kit::procnet;
use rumqttd::{ConnectionSettings, RouterConfig, ServerSettings};
use tracing::info;

pub use credentials::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the {what} listener on {addr} did not come up within {timeout:?}")]
    NotReady {
        addr: SocketAddr,
        what: &'static str,
        timeout: Duration,
    },
    #[error("cannot start the broker thread: {0}")]
    Thread(std::io::Error),
}

/// A started broker.
#[derive(Debug)]
pub struct Running {
    pub address: SocketAddr,
    /// Its slow-subscriber alerts, for [`lag::watch`] once a bus client exists.
    pub lag: Option<lag::LagAlerts>,
}

/// Starts the broker and returns once its listener accepts connections. rumqttd
/// cannot be stopped: it lives as long as the process.
pub fn start(config: &Config, credentials: &Credentials) -> Result<Running, BrokerError> {
    let (cli_slots, config) = (config.bus.cli_slots, &config.broker);
    // rumqttd only logs a failed bind from its server thread; check here so that an
    // address in use is an error the caller sees.
    let (addr, what) = (config.tcp_listen, "mqtt");
    TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, what, source })?;
    let rumqttd_config = rumqttd_config(config, cli_slots, credentials);
    let mut broker = rumqttd::Broker::new(rumqttd_config);
    let lag = broker.alerts().ok().map(lag::LagAlerts);
    std::thread::Builder::new()
        .name("cubeos-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    let timeout = Duration::from_secs(5);
    wait_listening(addr, timeout).ok_or(BrokerError::NotReady { addr, what, timeout })?;
    if set_nodelay_on_listener(addr.port()) == 0 {
        tracing::warn!(%addr, "could not set TCP_NODELAY on the listener; expect 40 ms stalls");
    }
    info!(%addr, "broker listening for services");
    Ok(Running { address: addr, lag })
}

/// Waits until a socket listens on `addr`'s port. Read from the kernel's socket
/// table rather than by connecting: a probe connection would make rumqttd log a
/// failed handshake at every start.
fn wait_listening(addr: SocketAddr, timeout: Duration) -> Option<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if is_listening(addr.port()) {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// True when a TCP socket listens on `port`.
fn is_listening(port: u16) -> bool {
    procnet::bound_ports(Path::new("/proc")).contains_key(&(port, Protocol::Tcp))
}

/// Sets TCP_NODELAY on this process's listening sockets on `port`, so that every
/// connection accepted from them inherits it (Linux copies it from the listener).
///
/// rumqttd 0.20 never sets it on its sockets: each small write it makes (a PUBACK,
/// a state message) then holds the next one to that client until the client's
/// delayed ACK, 40 ms later (measured with strace under the foundation benchmark).
/// rumqttd binds its listeners itself, so they are found through `/proc/self/fd`.
fn set_nodelay_on_listener(port: u16) -> usize {
    let inodes = procnet::bound_ports(Path::new("/proc"))
        .remove(&(port, Protocol::Tcp))
        .unwrap_or_default();
    let fds = procnet::socket_fds(Path::new("/proc/self/fd"), &inodes);
    fds.iter()
        .filter(|&&fd| {
            // SAFETY: `fd` is one of rumqttd's listening sockets, open for the life of
            // the process (the broker is never stopped); borrowing it to set an
            // option does not close or move it.
            let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            socket2::SockRef::from(&socket).set_tcp_nodelay(true).is_ok()
        })
        .count()
}

/// Translates CubeOS's broker settings into rumqttd's configuration.
fn rumqttd_config(config: &BrokerConfig, cli_slots: usize, credentials: &Credentials) -> rumqttd::Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: config.max_payload,
        max_inflight_count: 200,
        auth: Some(HashMap::from([(
            credentials.username.clone(),
            credentials.password.clone(),
        )])),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = |name: &str, listen| ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: connections.clone(),
    };
    rumqttd::Config {
        id: 0,
        router: RouterConfig {
            max_connections: config.max_connections,
            max_outgoing_packet_count: config.max_outgoing_packet_count,
            max_segment_size: config.segment_size,
            max_segment_count: config.segment_count,
            custom_segment: Some(logs::custom_segments(cli_slots)),
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([(
            "services".to_owned(),
            server("mqtt", config.tcp_listen),
        )])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        // Alerts: how slow subscribers are seen (no exporter).
        metrics: metric_settings(),
    }
}

/// Alerts every second. rumqttd's timer needs a meters interval too (without one
/// it panics), so meters are pushed hourly, to no one. Its settings keep their
/// interval private: they are built the way its config file would give them.
fn metric_settings() -> Option<HashMap<rumqttd::MetricType, rumqttd::MetricSettings>> {
    let every = |secs: u64| serde_json::from_value(serde_json::json!({ "push_interval": secs })).ok();
    Some(HashMap::from([
        (rumqttd::MetricType::Alerts, every(1)?),
        (rumqttd::MetricType::Meters, every(3600)?),
    ]))
}

/// Connects the broker's own bus client and reports slow subscribers on it
/// ([`lag`]) for as long as the process runs.
pub async fn report_lag(running: Running, options: cubeos_kit::BusOptions) -> Result<(), cubeos_kit::BusError> {
    let Some(alerts) = running.lag else { return Ok(()) };
    let bus = cubeos_kit::Bus::connect(options).await?;
    tokio::spawn(lag::watch(alerts, bus));
    Ok(())
}
