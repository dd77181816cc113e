//! `cubeos up` and `cubeos run <service>`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cubeos_broker::Credentials;
use cubeos_contract::liveness::Liveness;
use cubeos_contract::topics;
use cubeos_kit::secrets::SecretBox;
use cubeos_kit::service::Shutdown;
use cubeos_kit::{Bus, BusOptions, Config, ServiceContext, telemetry};
use tokio::task::JoinSet;
use tracing::{error, info};

use cubeos_services as services;

/// How long a service gets to come online before the next one starts.
const SERVICE_START: Duration = Duration::from_secs(15);

/// How long services get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the broker and every service until Ctrl-C or SIGTERM.
pub async fn up(config: Config) -> anyhow::Result<()> {
    telemetry::init(&config.log);
    // Private: it holds the database (hashes, token digests) and the keys.
    cubeos_kit::private_file::private_dir(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let credentials = Credentials::load_or_create(&config.credentials_path())?;
    let secrets = SecretBox::load_or_create(&config.secret_key_path())?;
    let broker = cubeos_broker::start(&config, &credentials)?;
    let reporter = BusOptions::new(&config, "cubeos-broker", &credentials.username, &credentials.password);
    cubeos_broker::report_lag(broker, reporter)
        .await
        .context("cannot reach the broker")?;
    // Outside clients are let in from the start; until the registry is online their
    // sign-ins are answered "server unavailable" (CONNACK 3).
    let gate = cubeos_broker::gate::start(&config, &credentials, secrets).await?;
    cubeos_dashboard::start(Arc::new(config.clone()), gate.door).await?;
    run_services(config, &credentials, &services::names()).await
}

/// Runs one service against a broker that is already running.
pub async fn run_one(config: Config, service: &str) -> anyhow::Result<()> {
    if services::find(service).is_none() {
        bail!("unknown service '{service}' (known: {})", services::names().join(", "));
    }
    telemetry::init(&config.log);
    let credentials = Credentials::load(&config.credentials_path())?;
    run_services(config, &credentials, &[service]).await
}

async fn run_services(config: Config, credentials: &Credentials, names: &[&str]) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let (trigger, shutdown) = Shutdown::new();
    let mut tasks = JoinSet::new();
    // Services start in order, each once the one before is online: the registry
    // answers before anyone asks it anything.
    // One watcher per process: `cubeos run` processes started together must not
    // take over each other's session.
    let watcher_id = format!("cubeos-up-{}", std::process::id());
    let watcher = Bus::connect(BusOptions::new(
        &config,
        &watcher_id,
        &credentials.username,
        &credentials.password,
    ))
    .await
    .context("cannot reach the broker")?;
    let mut liveness = watcher
        .subscribe(&topics::all_service_statuses(), rumqttc::QoS::AtMostOnce)
        .await?;
    // Every service connects first, which announces it `starting`: a client that
    // arrives while the system boots waits for it instead of finding nothing.
    let mut buses = Vec::new();
    for name in names {
        let entry = services::find(name).context("service list out of step")?;
        let options = BusOptions::new(&config, *name, &credentials.username, &credentials.password).for_service(name);
        let bus = Bus::connect(options)
            .await
            .with_context(|| format!("{name}: cannot reach the broker"))?;
        buses.push((*name, entry, bus));
    }
    for (name, entry, bus) in buses {
        let ctx = ServiceContext {
            config: Arc::clone(&config),
            bus,
            shutdown: shutdown.clone(),
        };
        let owned = name.to_string();
        tasks.spawn(async move { (owned, (entry.run)(ctx).await) });
        let online = topics::service_status(name);
        // Online, or ended: a service that fails at start is reported at once
        // instead of after the whole start timeout.
        let wait = async {
            loop {
                tokio::select! {
                    msg = liveness.recv() => match msg {
                        Some(msg) if msg.topic == online && Liveness::parse(&msg.payload) == Some(Liveness::Online) => {
                            return None;
                        }
                        Some(_) => {}
                        None => return None,
                    },
                    Some(done) = tasks.join_next() => return Some(done),
                }
            }
        };
        match tokio::time::timeout(SERVICE_START, wait).await {
            Ok(None) => {}
            Ok(Some(done)) => {
                trigger.trigger();
                return Err(ended(done));
            }
            Err(_) => error!(service = %name, "not online after {SERVICE_START:?}; starting the rest anyway"),
        }
    }
    watcher.shutdown().await;
    tokio::select! {
        _ = signal() => info!("shutting down"),
        Some(done) = tasks.join_next() => {
            trigger.trigger();
            return Err(ended(done));
        }
    }
    trigger.trigger();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(done) = tasks.join_next().await {
            if let Ok((name, Err(e))) = done {
                error!(service = %name, error = %e, "service failed while stopping");
            }
        }
    })
    .await;
    if drained.is_err() {
        error!("services did not stop within {SHUTDOWN_GRACE:?}");
    }
    info!("stopped");
    Ok(())
}

/// Why `cubeos up` ends when a service's task does.
fn ended(done: Result<(String, anyhow::Result<()>), tokio::task::JoinError>) -> anyhow::Error {
    match done {
        Ok((name, Ok(()))) => anyhow::anyhow!("service {name} stopped unexpectedly"),
        Ok((name, Err(e))) => anyhow::anyhow!("service {name} failed: {e:#}"),
        Err(e) => anyhow::anyhow!("a service panicked: {e}"),
    }
}

/// Ctrl-C or SIGTERM.
async fn signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot watch SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
