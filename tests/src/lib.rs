//! Test support for CubeOS's cross-service tests: a real broker on free loopback
//! ports, a real SQLite file in a temp dir, the registry running as it does in
//! `cubeos up`, and helpers for third-party clients.
//!
//! A test that needs a tool this machine lacks calls [`require`]: it prints
//! `SKIP <test>: <what is missing>` and the test passes, unless
//! `CUBEOS_TEST_STRICT=1`, when it fails (DESIGN.md section 8).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cubeos_broker::Credentials;
use cubeos_contract::liveness::Liveness;
use cubeos_contract::topics::{self, service::REGISTRY};
use cubeos_kit::secrets::SecretBox;
use cubeos_kit::service::{Shutdown, ShutdownTrigger};
use cubeos_kit::{Bus, BusError, BusOptions, Config, ServiceContext};
use serde_json::json;

pub mod bench;
pub mod fakes;

pub mod servers;

/// True when missing components must fail tests instead of skipping them.
pub fn strict() -> bool {
    std::env::var("CUBEOS_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// Checks that `program` is on PATH. Without it: panics in strict mode, otherwise
/// prints the SKIP line and returns false.
pub fn require(test: &str, program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    skip_unless(test, found, &format!("{program} is not installed"))
}

/// Skips (or fails in strict mode) when `available` is false.
pub fn skip_unless(test: &str, available: bool, missing: &str) -> bool {
    if !available {
        assert!(!strict(), "{test}: {missing} (CUBEOS_TEST_STRICT=1)");
        println!("SKIP {test}: {missing}");
    }
    available
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A configuration with free loopback ports and its data under `dir`.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let tcp = SocketAddr::from(([127, 0, 0, 1], free_port()));
    config.broker.tcp_listen = tcp;
    config.broker.address = tcp;
    config.gate.tcp_listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    config.gate.ws_listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    config.gate.address = config.gate.tcp_listen;
    config.log.level = std::env::var("CUBEOS_TEST_LOG").unwrap_or_else(|_| "warn".into());
    config
}

type Running = (ShutdownTrigger, tokio::task::JoinHandle<anyhow::Result<()>>);

/// A running broker with the services a test asked for, in this process.
pub struct System {
    pub dir: tempfile::TempDir,
    pub config: Arc<Config>,
    pub credentials: Credentials,
    services: Vec<Running>,
}

impl System {
    /// Broker and registry, ready for commands.
    pub async fn start() -> System {
        Self::start_with(|_| {}).await
    }

    /// Broker and registry with `configure` applied to the test configuration.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> System {
        let mut system = Self::broker_with(configure).await;
        system.start_registry().await;
        system
    }

    /// Only the broker (for tests that run the registry as a separate process).
    pub async fn broker_only() -> System {
        Self::broker_with(|_| {}).await
    }

    async fn broker_with(configure: impl FnOnce(&mut Config)) -> System {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        configure(&mut config);
        cubeos_kit::telemetry::init(&config.log);
        let credentials = Credentials::load_or_create(&config.credentials_path()).expect("credentials");
        let broker = cubeos_broker::start(&config, &credentials).expect("broker starts");
        let reporter = BusOptions::new(&config, "cubeos-broker", &credentials.username, &credentials.password);
        cubeos_broker::report_lag(broker, reporter)
            .await
            .expect("lag reporter connects");
        let secrets = SecretBox::load_or_create(&config.secret_key_path()).expect("secret key");
        cubeos_broker::gate::start(&config, &credentials, secrets)
            .await
            .expect("gate starts");
        System {
            dir,
            config: Arc::new(config),
            credentials,
            services: Vec::new(),
        }
    }

    /// Starts the registry in this process and waits until it answers.
    pub async fn start_registry(&mut self) {
        self.start_service(REGISTRY).await;
    }

    /// Starts the service called `name` (from the one list in `cubeos_services`)
    /// in this process and waits until it is online: it serves its commands.
    pub async fn start_service(&mut self, name: &str) {
        let entry = cubeos_services::find(name).unwrap_or_else(|| panic!("no service called {name}"));
        self.start_entry(*entry).await;
    }

    /// Starts a service that is not in the list (an example, or a test's own) and
    /// waits until it is online.
    pub async fn start_entry(&mut self, entry: cubeos_kit::service::Entry) {
        let name = entry.name;
        // A service that stopped left `offline` retained (its shutdown, or its last
        // will), so the `online` awaited here is this run's.
        let watcher = self.client(&format!("ready-probe-{name}")).await;
        let mut liveness = watcher
            .subscribe(&topics::service_status(name), rumqttc::QoS::AtMostOnce)
            .await
            .expect("liveness subscription");
        let bus = Bus::connect(self.options(name).for_service(name))
            .await
            .expect("service connects");
        let (trigger, shutdown) = Shutdown::new();
        let ctx = ServiceContext {
            config: Arc::clone(&self.config),
            bus,
            shutdown,
        };
        self.services.push((trigger, tokio::spawn((entry.run)(ctx))));
        let online = async {
            while let Some(msg) = liveness.recv().await {
                if Liveness::parse(&msg.payload) == Some(Liveness::Online) {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), online)
            .await
            .unwrap_or_else(|_| panic!("{name} did not come online"));
        watcher.shutdown().await;
    }

    pub fn options(&self, client_id: &str) -> BusOptions {
        BusOptions::new(
            &self.config,
            client_id,
            &self.credentials.username,
            &self.credentials.password,
        )
    }

    /// A bus client with its own id.
    pub async fn client(&self, client_id: &str) -> Bus {
        Bus::connect(self.options(client_id)).await.expect("client connects")
    }

    pub fn mqtt_port(&self) -> u16 {
        self.config.broker.tcp_listen.port()
    }

    /// The gate's MQTT-over-WebSocket port.
    pub fn ws_port(&self) -> u16 {
        self.config.gate.ws_listen.port()
    }

    /// The gate's MQTT port.
    pub fn gate_port(&self) -> u16 {
        self.config.gate.tcp_listen.port()
    }

    /// Creates a user through the registry (as the system, on loopback).
    pub async fn add_user(&self, username: &str, password: &str, role: &str) {
        let client = self.client(&format!("add-user-{username}")).await;
        client
            .request(
                "registry",
                "user.add",
                &json!({ "username": username, "password": password, "role": role }),
            )
            .await
            .expect("user.add");
        client.shutdown().await;
    }

    /// A bus client signed in through the gate.
    pub async fn gate_client(&self, client_id: &str, username: &str, secret: &str) -> Result<Bus, BusError> {
        let mut options = BusOptions::new(&self.config, client_id, username, secret);
        options.address = self.config.gate.tcp_listen;
        Bus::connect(options).await
    }

    /// The data dir's secret key, as a service on the box holds it.
    pub fn secrets(&self) -> SecretBox {
        SecretBox::load(&self.config.secret_key_path()).expect("secret key")
    }

    /// `-h -p -u -P` for mosquitto_pub / mosquitto_sub through the gate.
    pub fn gate_args(&self, username: &str, password: &str) -> Vec<String> {
        vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.gate_port().to_string(),
            "-u".into(),
            username.into(),
            "-P".into(),
            password.into(),
        ]
    }

    pub fn database_path(&self) -> PathBuf {
        self.config.database_path()
    }

    /// `-h -p -u -P` for mosquitto_pub / mosquitto_sub.
    pub fn mosquitto_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.mqtt_port().to_string(),
            "-u".into(),
            self.credentials.username.clone(),
            "-P".into(),
            self.credentials.password.clone(),
        ]
    }
}

/// Polls until the registry answers a read.
pub async fn wait_for_registry(client: &Bus) {
    for _ in 0..100 {
        let probe = client
            .request_with_timeout(
                cubeos_registry::SERVICE,
                "state.get",
                &json!({}),
                Duration::from_millis(500),
            )
            .await;
        if probe.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the registry did not answer");
}

/// Every row of every table, for "nothing changed" assertions. Timestamps are
/// included: a refused command must not even touch `updated_at`.
pub async fn snapshot(db: &Path) -> Vec<(String, Vec<String>)> {
    use sqlx::{ConnectOptions, Row, sqlite::SqliteConnectOptions};
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .expect("open db");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_sqlx%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    let mut out = Vec::new();
    for table in tables {
        let sql = format!("SELECT * FROM \"{table}\" ORDER BY 1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut conn)
            .await
            .expect("rows");
        let rendered = rows
            .iter()
            .map(|row| {
                (0..row.columns().len())
                    .map(|i| {
                        row.try_get::<Option<String>, _>(i)
                            .map(|v| v.unwrap_or_else(|| "NULL".into()))
                            .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                            .unwrap_or_else(|_| "?".into())
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        out.push((table, rendered));
    }
    out
}

/// A TCP forwarder whose target can be switched and whose connections can be cut,
/// to make a client lose its broker and find another one.
pub struct Proxy {
    pub addr: SocketAddr,
    target: Arc<std::sync::Mutex<SocketAddr>>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let target = Arc::new(std::sync::Mutex::new(target));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (t, c) = (Arc::clone(&target), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = *t.lock().unwrap();
                let mut cut_rx = c.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, target, cut }
    }

    /// New connections go to `target` from now on.
    pub fn set_target(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }

    /// Drops every open connection (no MQTT DISCONNECT: the broker sees a crash).
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// True when a Docker daemon in Swarm mode answers; otherwise SKIP (or fail in
/// strict mode).
pub async fn require_swarm(test: &str) -> Option<bollard::Docker> {
    let docker = cubeos_kit::docker::connect(&Default::default()).await.ok();
    let swarm = match &docker {
        Some(d) => d.inspect_swarm().await.is_ok(),
        None => false,
    };
    skip_unless(test, swarm, "no Docker daemon in Swarm mode at /var/run/docker.sock")
        .then_some(docker)
        .flatten()
}

/// The test image: busybox, statically linked, in an image built FROM scratch
/// (no image can be pulled here). Built once per machine with the docker CLI.
pub const TEST_IMAGE: &str = "cubeos-test/busybox:latest";

pub fn ensure_test_image() {
    let present = std::process::Command::new("docker")
        .args(["image", "inspect", TEST_IMAGE])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed");
    let dir = tempfile::tempdir().expect("build dir");
    std::fs::copy(busybox, dir.path().join("busybox")).expect("copy busybox");
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n",
    )
    .expect("Dockerfile");
    let status = std::process::Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", TEST_IMAGE])
        .arg(dir.path())
        .status()
        .expect("docker build runs");
    assert!(status.success(), "building {TEST_IMAGE} failed");
}

/// Runs the docker CLI; fails the test when it fails.
pub fn docker_cli(args: &[&str]) {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes the test image, named `image`, to `archive` as `docker save` does, and
/// leaves the box without `image`: an image only a file can bring.
pub fn save_test_image_as(image: &str, archive: &Path) {
    ensure_test_image();
    docker_cli(&["tag", TEST_IMAGE, image]);
    docker_cli(&["save", "-o", &archive.display().to_string(), image]);
    docker_cli(&["rmi", image]);
}
