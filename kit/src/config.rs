//! Configuration: built-in defaults, then an optional TOML file, then
//! `CUBEOS__SECTION__KEY` environment variables (DESIGN.md section 6).
//!
//! Every key has a default, so `cubeos up` runs with no file at all. Durations are
//! humantime strings (`30s`, `5m`); sizes are bytes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secrets::Secret;

/// Where the TOML file is looked for when `--config` is not given. A missing default
/// file is fine; a missing explicit one is an error.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/cubeos/cubeos.toml";

/// Prefix of the environment overrides: `CUBEOS__BROKER__TCP_LISTEN=127.0.0.1:1884`.
pub const ENV_PREFIX: &str = "CUBEOS";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Root of everything CubeOS writes: the database, broker credentials, apps.
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub broker: BrokerConfig,
    pub bus: BusConfig,
    pub store: StoreConfig,
    pub apps: AppsConfig,
    pub ports: PortsConfig,
    pub docker: DockerConfig,
    pub orchestrator: OrchestratorConfig,
    pub gate: GateConfig,
    pub auth: AuthConfig,
    pub proxy: ProxyConfig,
    pub dashboard: DashboardConfig,
}

/// The web dashboard `cubeos up` serves, with the gate's MQTT-over-WebSocket at
/// `/mqtt` on the same origin (so it works through the reverse proxy too).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// HTTP; the seed's `PortDashboard` is 6011.
    pub listen: SocketAddr,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 6011)),
        }
    }
}

/// The dns/npm-proxy service: which backends keep a name for every app.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// `none`, `dnsmasq` or `pihole`.
    pub dns: DnsBackendKind,
    /// `none`, `nginx` or `npm`.
    pub proxy: ProxyBackendKind,
    /// A full reconcile pass at least this often (and on every name change).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Longest wait between retries while a backend is down.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Where proxied apps are reached from the proxy (apps publish on the box).
    pub backend_host: String,
    pub dnsmasq: DnsmasqConfig,
    pub nginx: NginxConfig,
    pub pihole: PiholeConfig,
    pub npm: NpmConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsBackendKind {
    None,
    Dnsmasq,
    Pihole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyBackendKind {
    None,
    Nginx,
    Npm,
}

/// dnsmasq: a hosts file this service owns (dnsmasq's `--addn-hosts`), re-read on SIGHUP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsmasqConfig {
    pub hosts_file: PathBuf,
    /// dnsmasq's pid file, for the SIGHUP.
    pub pid_file: PathBuf,
    /// Also write `address=/<domain>/<gateway>` here (a conf-dir file; dnsmasq reads
    /// it at start only).
    pub wildcard_file: Option<PathBuf>,
}

/// nginx: one server block per name in a directory this service owns, included
/// from nginx's `http {}`; `test_command` must pass before `reload_command` runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NginxConfig {
    pub conf_dir: PathBuf,
    /// `listen` of every server block.
    pub listen: String,
    pub test_command: Vec<String>,
    pub reload_command: Vec<String>,
    /// For names with `ssl_enabled`; without them such names are served over HTTP.
    pub ssl_certificate: Option<PathBuf>,
    pub ssl_certificate_key: Option<PathBuf>,
}

/// Pi-hole v6 REST API. The password may be sealed (`sealed:v1:...`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PiholeConfig {
    pub url: String,
    /// Redacted in Debug, so a logged config never shows it.
    pub password: Secret,
}

/// Nginx Proxy Manager REST API. The password may be sealed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NpmConfig {
    pub url: String,
    pub email: String,
    /// Redacted in Debug, so a logged config never shows it.
    pub password: Secret,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            dns: DnsBackendKind::None,
            proxy: ProxyBackendKind::None,
            interval: Duration::from_secs(60),
            max_backoff: Duration::from_secs(60),
            backend_host: "127.0.0.1".into(),
            dnsmasq: DnsmasqConfig::default(),
            nginx: NginxConfig::default(),
            pihole: PiholeConfig::default(),
            npm: NpmConfig::default(),
        }
    }
}

impl Default for DnsmasqConfig {
    fn default() -> Self {
        DnsmasqConfig {
            hosts_file: PathBuf::from("/etc/cubeos/dnsmasq.hosts"),
            pid_file: PathBuf::from("/run/dnsmasq/dnsmasq.pid"),
            wildcard_file: None,
        }
    }
}

impl Default for NginxConfig {
    fn default() -> Self {
        NginxConfig {
            conf_dir: PathBuf::from("/etc/nginx/cubeos.d"),
            listen: "80".into(),
            test_command: vec!["nginx".into(), "-t".into()],
            reload_command: vec!["nginx".into(), "-s".into(), "reload".into()],
            ssl_certificate: None,
            ssl_certificate_key: None,
        }
    }
}

/// The gate: where outside clients (dashboard, CLI elsewhere, devices, nodes) connect.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// MQTT 3.1.1 over TCP.
    pub tcp_listen: SocketAddr,
    /// MQTT 3.1.1 over WebSocket (`mqtt` subprotocol), for the dashboard.
    pub ws_listen: SocketAddr,
    /// Where `cubeos login` connects by default.
    pub address: SocketAddr,
    /// How long a new connection has to send CONNECT.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long the gate waits for a service to answer a client's command before it
    /// answers `timeout` itself.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Connections without credentials open at once (they may only sign in, or run
    /// first-boot setup): more are refused with CONNACK 3.
    pub max_anonymous: usize,
    /// How long a connection without credentials may stay: enough to sign in.
    #[serde(with = "humantime_serde")]
    pub anonymous_timeout: Duration,
    /// Topic filters one outside connection may hold at once; more are refused
    /// (SUBACK 0x80). The gate matches them itself, so they cost the broker nothing.
    pub max_subscriptions: usize,
}

/// Sign-in: sessions and login throttling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// How long a session token lives unless refreshed.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Failed logins (per user, and per address) before logins are refused.
    pub max_failures: u32,
    /// How long logins stay refused after `max_failures`.
    #[serde(with = "humantime_serde")]
    pub lockout: Duration,
    /// Password hashes (argon2id, 19 MiB each) computed at the same time.
    pub max_concurrent_hashes: usize,
    /// Sign-ins that may wait for a hash; more are refused at once (`unavailable`,
    /// CONNACK 3 at the gate), so a flood costs neither memory nor a queue.
    pub max_queued_hashes: usize,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            tcp_listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            ws_listen: SocketAddr::from(([0, 0, 0, 0], 9001)),
            address: SocketAddr::from(([127, 0, 0, 1], 1883)),
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(120),
            max_anonymous: 32,
            anonymous_timeout: Duration::from_secs(30),
            max_subscriptions: 32,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            max_failures: 5,
            lockout: Duration::from_secs(60),
            max_concurrent_hashes: 2,
            max_queued_hashes: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive, e.g. `info` or `cubeos_registry=debug`.
    pub level: String,
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// MQTT over TCP for the services; loopback only: it trusts its clients, and
    /// everyone else comes through the gate.
    pub tcp_listen: SocketAddr,
    /// Where local clients (services, the CLI on the box) connect.
    pub address: SocketAddr,
    /// Largest MQTT payload the broker accepts, in bytes. Larger packets end the
    /// sender's connection; services refuse commands above `bus.max_command_bytes`.
    pub max_payload: usize,
    pub max_connections: usize,
    /// Retained messages a fresh QoS 0 wildcard subscriber can receive at once:
    /// rumqttd silently drops the rest, so this must exceed the number of state topics.
    pub max_outgoing_packet_count: u64,
    /// In-memory log of a reply filter (services', the gate's) or any filter
    /// outside the bus's own kinds: about size x (count + 1) bytes of messages.
    /// It is also how far a subscriber may lag before rumqttd drops messages it
    /// has not read yet (the bus's other kinds: `broker/src/logs.rs`).
    pub segment_size: usize,
    pub segment_count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// How long a request waits for its reply.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest command payload a service will parse.
    pub max_command_bytes: usize,
    /// Commands one service handles at the same time.
    pub max_concurrent_commands: usize,
    /// Client ids (`cli-0` ..) the CLI on the box leases, one per running call:
    /// the number of reply topics the broker ever holds for it. More CLI calls at
    /// once wait for a free one.
    pub cli_slots: usize,
}

/// What CubeOS gives every app it installs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppsConfig {
    /// `PUID` / `PGID` for CasaOS apps: the owner of the files they write.
    pub puid: u32,
    pub pgid: u32,
    /// `TZ`; empty means the system's time zone.
    pub timezone: String,
    /// Where CasaOS's shared `/DATA/...` folders (media, downloads) go; empty means
    /// `<data_dir>/shared`.
    pub shared_dir: PathBuf,
    /// How ports are published: `host` (works without IPVS) or `ingress`.
    pub publish_mode: PublishMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    #[default]
    Host,
    Ingress,
}

impl Default for AppsConfig {
    fn default() -> Self {
        AppsConfig {
            puid: 1000,
            pgid: 1000,
            timezone: String::new(),
            shared_dir: PathBuf::new(),
            publish_mode: PublishMode::Host,
        }
    }
}

/// Port ranges per app type (`start-end`, inclusive) and ports no user app gets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortsConfig {
    pub system: String,
    pub platform: String,
    pub network: String,
    pub ai: String,
    pub user: String,
    /// Host services and CubeOS's fixed ports: never handed to user apps.
    pub reserved: Vec<u16>,
    /// How often `cubeos/state/ports` is recomputed even without changes (sockets
    /// and Swarm services come and go on their own).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
}

impl Default for PortsConfig {
    fn default() -> Self {
        PortsConfig {
            system: "6000-6009".into(),
            platform: "6010-6019".into(),
            network: "6020-6029".into(),
            ai: "6030-6039".into(),
            user: "6100-6999".into(),
            reserved: vec![
                22, 53, 67, 80, 443, 1883, 1884, 5000, 6000, 6001, 6005, 6010, 6011, 6012, 6013, 6020, 6021, 6022,
                6023, 6030, 6031, 6032, 6042, 6043, 6050, 9001,
            ],
            refresh_interval: Duration::from_secs(30),
        }
    }
}

/// How the orchestrator runs apps on Swarm.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestratorConfig {
    /// Make this node a Swarm manager at start when it is not one yet.
    pub swarm_init: bool,
    /// The address `docker swarm init` advertises.
    pub advertise_addr: String,
    /// How long an install waits for its services to run.
    #[serde(with = "humantime_serde")]
    pub converge_timeout: Duration,
    /// How often the reconciler compares the registry with Swarm (it also runs at
    /// start and on Docker events).
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// Deploy the core apps (Pi-hole, NPM, registry, Dozzle, File Browser). Off by
    /// default: their images must be pullable or already on the box.
    pub deploy_core_apps: bool,
    /// An image registry on the box or the LAN (`host:port`, empty for none): an
    /// image whose name starts with it counts as present when the registry has it.
    pub local_registry: String,
    /// Let an install go ahead with images that are missing, for Swarm to pull
    /// (a box with internet). Off: an offline box refuses such an install at once.
    pub pull_missing_images: bool,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        OrchestratorConfig {
            swarm_init: true,
            advertise_addr: "127.0.0.1".into(),
            converge_timeout: Duration::from_secs(120),
            reconcile_interval: Duration::from_secs(30),
            deploy_core_apps: false,
            local_registry: String::new(),
            pull_missing_images: false,
        }
    }
}

/// How to reach the Docker Engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// The Engine's unix socket.
    pub socket: PathBuf,
    /// Timeout of one Engine API call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            socket: PathBuf::from("/var/run/docker.sock"),
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// How long a connection waits on a locked database before failing.
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
    /// Read-only connections for queries (writes use a single connection).
    pub read_connections: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./cubeos-data"),
            log: LogConfig::default(),
            broker: BrokerConfig::default(),
            bus: BusConfig::default(),
            store: StoreConfig::default(),
            apps: AppsConfig::default(),
            ports: PortsConfig::default(),
            docker: DockerConfig::default(),
            orchestrator: OrchestratorConfig::default(),
            gate: GateConfig::default(),
            auth: AuthConfig::default(),
            proxy: ProxyConfig::default(),
            dashboard: DashboardConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            tcp_listen: SocketAddr::from(([127, 0, 0, 1], 1884)),
            address: SocketAddr::from(([127, 0, 0, 1], 1884)),
            max_payload: 2 * 1024 * 1024,
            max_connections: 1024,
            max_outgoing_packet_count: 10_000,
            segment_size: 512 * 1024,
            segment_count: 1,
        }
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            request_timeout: Duration::from_secs(10),
            max_command_bytes: 256 * 1024,
            max_concurrent_commands: 64,
            cli_slots: 8,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (or [`DEFAULT_CONFIG_FILE`] if it exists), then
    /// the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// [`Config::load`] with an explicit environment, for tests.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let invalid = |e: config::ConfigError| ConfigError::Invalid(e.to_string());
        let defaults = config::Config::try_from(&Config::default()).map_err(invalid)?;
        let mut builder = config::Config::builder().add_source(defaults);
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => builder = builder.add_source(config::File::from(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                builder = builder.add_source(config::File::with_name(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        let env: config::Map<String, String> = env.into_iter().collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .source(Some(env)),
        );
        let cfg: Config = builder.build().map_err(invalid)?.try_deserialize().map_err(invalid)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects values that would make a component misbehave (rumqttd panics on a
    /// segment under 1 KiB, for one).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let b = &self.broker;
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if b.segment_size < 1024 {
            return bad("broker.segment_size must be at least 1024 bytes");
        }
        if b.segment_count == 0 {
            return bad("broker.segment_count must be at least 1");
        }
        if b.max_connections == 0 || b.max_outgoing_packet_count == 0 {
            return bad("broker.max_connections and broker.max_outgoing_packet_count must be positive");
        }
        if self.bus.max_command_bytes == 0 || self.bus.max_command_bytes > b.max_payload {
            return bad("bus.max_command_bytes must be between 1 and broker.max_payload");
        }
        if self.bus.max_concurrent_commands == 0 || self.store.read_connections == 0 || self.bus.cli_slots == 0 {
            return bad("bus.max_concurrent_commands, bus.cli_slots and store.read_connections must be positive");
        }
        if self.auth.max_concurrent_hashes == 0 {
            return bad("auth.max_concurrent_hashes must be at least 1");
        }
        Ok(())
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("cubeos.db")
    }

    /// Where an app's files live: `<data>/apps/<name>`.
    pub fn app_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("apps").join(name)
    }

    /// CasaOS's shared `/DATA` folders.
    pub fn shared_dir(&self) -> PathBuf {
        if self.apps.shared_dir.as_os_str().is_empty() {
            self.data_dir.join("shared")
        } else {
            self.apps.shared_dir.clone()
        }
    }

    /// `TZ` for apps: the configured one, else the system's (`/etc/timezone`, the
    /// `/etc/localtime` link), else UTC.
    pub fn timezone(&self) -> String {
        if !self.apps.timezone.is_empty() {
            return self.apps.timezone.clone();
        }
        if let Ok(tz) = std::fs::read_to_string("/etc/timezone") {
            let tz = tz.trim();
            if !tz.is_empty() {
                return tz.to_owned();
            }
        }
        std::fs::read_link("/etc/localtime")
            .ok()
            .and_then(|p| p.to_str().and_then(|s| s.split("zoneinfo/").nth(1)).map(str::to_owned))
            .unwrap_or_else(|| "UTC".to_owned())
    }

    /// This installation's id, generated on first use (`<data>/instance-id`): Swarm
    /// objects carry it, so two CubeOS installations sharing a Docker daemon never
    /// touch each other's.
    pub fn instance_id(&self) -> std::io::Result<String> {
        let path = self.data_dir.join("instance-id");
        if let Ok(id) = std::fs::read_to_string(&path) {
            let id = id.trim();
            if !id.is_empty() {
                return Ok(id.to_owned());
            }
        }
        std::fs::create_dir_all(&self.data_dir)?;
        let id = format!("{:016x}", rand::random::<u64>());
        std::fs::write(&path, &id)?;
        Ok(id)
    }

    /// The box's copy of app stores (`store.add`): one dir per app, holding its
    /// `docker-compose.yml` and, when the store had one, `icon.png`.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    /// `<data>/store/apps`: one dir per store app.
    pub fn store_apps_dir(&self) -> PathBuf {
        self.store_dir().join("apps")
    }

    /// The store dir of one app, by its store id (already validated).
    pub fn store_app_dir(&self, id: &str) -> PathBuf {
        self.store_apps_dir().join(id)
    }

    /// A store app's icon (the file exists when the store had one).
    pub fn store_icon(&self, id: &str) -> PathBuf {
        self.store_app_dir(id).join(crate::files::ICON_FILE)
    }

    /// An installed app's icon, beside its compose file (copied from the store).
    pub fn app_icon(&self, name: &str) -> PathBuf {
        self.app_dir(name).join("appconfig").join(crate::files::ICON_FILE)
    }

    /// The broker's generated service credentials (mode 0600).
    pub fn credentials_path(&self) -> PathBuf {
        self.data_dir.join("broker-credentials.json")
    }

    /// Where the CLI's reply-slot locks live ([`crate::slots`]).
    pub fn slots_dir(&self) -> PathBuf {
        self.data_dir.join("slots")
    }

    /// The key that seals secrets (mode 0600).
    pub fn secret_key_path(&self) -> PathBuf {
        self.data_dir.join("secret.key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_logged_config_shows_no_backend_password() {
        let mut config = Config::default();
        config.proxy.pihole.password = "pihole-Secret-1".into();
        config.proxy.npm.password = "npm-Secret-2".into();
        let logged = format!("{config:?}");
        assert!(!logged.contains("Secret-1") && !logged.contains("Secret-2"), "{logged}");
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cubeos.example.toml");
        let example = Config::load_from(Some(&path), env(&[])).unwrap();
        assert_eq!(
            serde_json::to_value(&example).unwrap(),
            serde_json::to_value(Config::default()).unwrap()
        );
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./cubeos-data"));
        assert_eq!(c.broker.tcp_listen.port(), 1884);
        assert!(
            c.broker.tcp_listen.ip().is_loopback(),
            "rumqttd trusts its clients: loopback only"
        );
        assert_eq!(c.gate.tcp_listen.port(), 1883);
        assert_eq!(c.gate.ws_listen.port(), 9001);
        assert_eq!(c.bus.request_timeout, Duration::from_secs(10));
    }

    #[test]
    fn file_then_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cubeos.toml");
        std::fs::write(
            &file,
            "data_dir = '/tmp/x'\n[broker]\ntcp_listen = '127.0.0.1:2000'\n[bus]\nrequest_timeout = '1m 30s'\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&file),
            env(&[
                ("CUBEOS__BROKER__TCP_LISTEN", "127.0.0.1:3000"),
                ("CUBEOS__LOG__LEVEL", "debug"),
                ("CUBEOS__BUS__MAX_CONCURRENT_COMMANDS", "8"),
            ]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.broker.tcp_listen.port(), 3000);
        assert_eq!(c.bus.request_timeout, Duration::from_secs(90));
        assert_eq!(c.log.level, "debug");
        assert_eq!(c.bus.max_concurrent_commands, 8);
        let top = Config::load_from(None, env(&[("CUBEOS__DATA_DIR", "/srv/cube")])).unwrap();
        assert_eq!(top.data_dir, PathBuf::from("/srv/cube"));
    }

    #[test]
    fn bad_values_are_typed_errors() {
        assert!(matches!(
            Config::load_from(None, env(&[("CUBEOS__BROKER__SEGMENT_SIZE", "10")])),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            Config::load_from(None, env(&[("CUBEOS__BUS__REQUEST_TIMEOUT", "soon")])),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            Config::load_from(Some(Path::new("/nonexistent/cubeos.toml")), env(&[])),
            Err(ConfigError::MissingFile(_))
        ));
    }
}
