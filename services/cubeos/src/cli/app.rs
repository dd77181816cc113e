//! `cubeos app ...`

use clap::Subcommand;
use std::collections::BTreeMap;

use cubeos_contract::api::Command;
use cubeos_contract::api::orchestrator::{
    AppChanged, AppStatus, Disable, Enable, Logs, Remove, Restart, Start, Status, Statuses, Stop,
};
use cubeos_contract::api::registry::{AppGet, AppList};
use cubeos_contract::liveness::Liveness;
use cubeos_contract::models::AppRecord;
use cubeos_contract::topics::{self, service::ORCHESTRATOR, service::REGISTRY};
use cubeos_contract::validate;
use cubeos_kit::{BusError, ErrorCode};
use serde::Serialize;

use super::progress::{self, Bar, Ended};
use super::{Cli, Client};
use crate::output;

/// The app a lifecycle command is for, and whether to wait for Swarm.
#[derive(clap::Args)]
pub struct Lifecycle {
    pub name: String,
    /// Return once the change is asked for, without waiting until the app runs
    /// (or has stopped).
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Subcommand)]
pub enum AppCommand {
    /// List installed apps.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show one app with its ports and names.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Install an app from a compose file, following its progress.
    Install {
        /// A compose file, or `-` for standard input.
        file: String,
        #[arg(long)]
        name: Option<String>,
        /// Accept what Swarm cannot honour (host paths, privileged, devices).
        #[arg(long)]
        force: bool,
        /// VAR=value for the compose file's variables.
        #[arg(long = "env", value_name = "VAR=VALUE")]
        env: Vec<String>,
    },
    /// Start an app's services.
    Start(Lifecycle),
    /// Stop an app's services (they stay stopped until started).
    Stop(Lifecycle),
    /// Restart an app's services.
    Restart(Lifecycle),
    /// Enable an app (start it, and on every boot).
    Enable(Lifecycle),
    /// Disable an app (stop it, and not on boot).
    Disable(Lifecycle),
    /// Remove an app: its services, ports, names and files.
    Rm {
        name: String,
        /// Keep the app's data directory and volumes.
        #[arg(long)]
        keep_data: bool,
    },
    /// An app's logs.
    Logs {
        name: String,
        #[arg(long, default_value_t = 100)]
        tail: i64,
        /// Unix seconds.
        #[arg(long)]
        since: Option<i64>,
    },
    /// An app's runtime status.
    Status {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Show what installing a compose file would do (no running system needed).
    Preview {
        /// A compose file, or `-` for standard input.
        file: String,
        /// The app's name (default: the file's `name:`, else its file name).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
        /// Accept what Swarm cannot honour (host paths, privileged, devices).
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(cli: &Cli, cmd: AppCommand) -> anyhow::Result<()> {
    if let AppCommand::Preview {
        file,
        name,
        json,
        force,
    } = cmd
    {
        return super::preview::run(cli, &file, name, json, force).await;
    }
    let client = Client::connect(cli).await?;
    let result = match cmd {
        AppCommand::Ls { json } => list(&client, json).await,
        AppCommand::Install { file, name, force, env } => super::install::run(&client, &file, name, force, &env).await,
        AppCommand::Start(l) => lifecycle(&client, l, |name| Start { name }).await,
        AppCommand::Stop(l) => lifecycle(&client, l, |name| Stop { name }).await,
        AppCommand::Restart(l) => lifecycle(&client, l, |name| Restart { name }).await,
        AppCommand::Enable(l) => lifecycle(&client, l, |name| Enable { name }).await,
        AppCommand::Disable(l) => lifecycle(&client, l, |name| Disable { name }).await,
        AppCommand::Rm { name, keep_data } => remove(&client, name, keep_data).await,
        AppCommand::Logs { name, tail, since } => {
            let args = Logs {
                name,
                tail: Some(tail),
                since,
            };
            for line in client.call(&args).await?.lines {
                output::line(&line);
            }
            Ok(())
        }
        AppCommand::Status { name, json } => {
            let reply = client
                .call(&Status {
                    name: Some(name.clone()),
                })
                .await?;
            if json {
                return output::json(&reply);
            }
            let Statuses::One { status, .. } = reply else {
                return Err(BusError::internal("the orchestrator answered with every app's status").into());
            };
            let Some(s) = status else {
                output::line(&format!("{name}: no status yet"));
                return Ok(());
            };
            let rows = vec![
                vec!["health".to_owned(), health_text(&s)],
                vec!["replicas".to_owned(), s.replicas.clone()],
                vec!["running".to_owned(), s.running.to_string()],
                vec!["last_started".to_owned(), s.last_started.clone()],
                vec!["error".to_owned(), s.error.clone()],
            ];
            output::table(&["STATUS", &name], &rows);
            Ok(())
        }
        AppCommand::Show { name, json } => {
            let record = client.call(&AppGet { name }).await?;
            if json {
                output::json(&record)
            } else {
                print_app(&record);
                Ok(())
            }
        }
        AppCommand::Preview { .. } => unreachable!("handled above"),
    };
    client.shutdown().await;
    result
}

/// The status column of `app ls` when the orchestrator gave no statuses.
enum NoStatus {
    Starting,
    Down(String),
}

/// `app ls`: the registry's apps with the orchestrator's statuses. Both services
/// are waited for first (the orchestrator registers the core apps before it goes
/// online), so a list is never printed from a system still starting.
async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    client.ready(REGISTRY).await?;
    let statuses = match client.ready(ORCHESTRATOR).await {
        Ok(()) => match client.call(&Status::default()).await {
            Ok(Statuses::All(all)) => Ok(all),
            Ok(Statuses::One { .. }) => Err(NoStatus::Down("answered for one app".into())),
            Err(e) => Err(NoStatus::Down(e.code.to_string())),
        },
        Err(_) if client.liveness_of(ORCHESTRATOR) == Some(Liveness::Starting) => Err(NoStatus::Starting),
        Err(_) => Err(NoStatus::Down("down".into())),
    };
    let apps = client.call(&AppList::default()).await?;
    if json {
        return output::json(&Listing {
            apps: &apps,
            status: statuses.as_ref().ok(),
        });
    }
    print_list(&apps, &statuses);
    Ok(())
}

/// `app ls --json`: the apps and, when the orchestrator answered, their statuses.
#[derive(Serialize)]
struct Listing<'a> {
    apps: &'a [AppRecord],
    status: Option<&'a BTreeMap<String, AppStatus>>,
}

/// `app rm`: says what could not be removed.
async fn remove(client: &Client, name: String, keep_data: bool) -> anyhow::Result<()> {
    let reply = client.call(&Remove { name, keep_data }).await?;
    output::line(&format!("{}: remove done", reply.app));
    for volume in reply.volumes_left {
        output::line(&format!(
            "warning: volume {volume} could not be removed (still in use?): remove it with `docker volume rm {volume}`"
        ));
    }
    Ok(())
}

/// An app's health as people read it.
fn health_text(status: &AppStatus) -> String {
    match status.health.as_str() {
        "not_deployed" => "not deployed".into(),
        h => h.into(),
    }
}

fn ports_of(record: &AppRecord) -> String {
    record
        .ports
        .iter()
        .map(|p| format!("{}/{}", p.port, p.protocol))
        .collect::<Vec<_>>()
        .join(",")
}

/// A lifecycle command: asks for the change, then (unless `--no-wait`) follows
/// its job with a progress bar until Swarm has carried it out. A job that fails
/// exits non-zero with the failing step.
async fn lifecycle<C>(client: &Client, l: Lifecycle, command: impl FnOnce(String) -> C) -> anyhow::Result<()>
where
    C: Command<Reply = AppChanged>,
{
    let action = C::ACTION;
    validate::name("name", &l.name).map_err(BusError::from)?;
    // Subscribed before asking, so that no progress event is missed.
    let mut events = client
        .bus
        .subscribe(&topics::app_progress(&l.name), rumqttc::QoS::AtMostOnce)
        .await?;
    let reply = client.call(&command(l.name)).await?;
    if let Some(job) = reply.job.as_deref().filter(|_| !l.no_wait) {
        let mut bar = Bar::new();
        let ended = progress::follow(client, &mut events, job, &mut bar).await?;
        bar.finish();
        match ended {
            Ended::Done(_) => {}
            Ended::Failed(event) => {
                return Err(BusError::new(
                    event.code.unwrap_or(ErrorCode::Internal),
                    format!("{}: {action}: {}", reply.app, event.message),
                )
                .into());
            }
            Ended::Lost => {
                return Err(BusError::unavailable(format!(
                    "{}: CubeOS restarted before the {action} was seen through; see `cubeos app status {0}`",
                    reply.app
                ))
                .into());
            }
        }
    }
    output::line(&format!("{}: {action} done", reply.app));
    Ok(())
}

fn print_list(apps: &[AppRecord], statuses: &Result<BTreeMap<String, AppStatus>, NoStatus>) {
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|r| {
            vec![
                r.app.name.clone(),
                r.app.app_type.as_str().to_owned(),
                if r.app.enabled { "yes" } else { "no" }.to_owned(),
                ports_of(r),
                r.fqdns.iter().map(|f| f.fqdn.as_str()).collect::<Vec<_>>().join(","),
                match statuses {
                    Err(NoStatus::Starting) => "(orchestrator starting)".to_owned(),
                    Err(NoStatus::Down(why)) => format!("(orchestrator {why})"),
                    Ok(all) => match all.get(&r.app.name) {
                        None => "-".to_owned(),
                        Some(s) if s.health == "not_deployed" => "not deployed".to_owned(),
                        Some(s) => format!("{} {}", health_text(s), s.replicas),
                    },
                },
            ]
        })
        .collect();
    output::table(&["NAME", "TYPE", "ENABLED", "PORTS", "FQDNS", "STATUS"], &rows);
}

fn print_app(r: &AppRecord) {
    let a = &r.app;
    let field = |k: &str, v: &str| vec![k.to_owned(), v.to_owned()];
    let rows = vec![
        field("name", &a.name),
        field("display name", &a.display_name),
        field("description", &a.description),
        field("type", a.app_type.as_str()),
        field("category", &a.category),
        field("source", a.source.as_str()),
        field("enabled", if a.enabled { "yes" } else { "no" }),
        field("version", &a.version),
        field("compose", &a.compose_path),
        field("data", &a.data_path),
        field("ports", &ports_of(r)),
        field(
            "fqdns",
            &r.fqdns
                .iter()
                .map(|f| format!("{} -> :{}", f.fqdn, f.backend_port))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ];
    output::table(&["FIELD", "VALUE"], &rows);
}
