//! `cubeos app ...`

use clap::Subcommand;
use cubeos_shared::liveness::Liveness;
use cubeos_shared::models::AppRecord;
use cubeos_shared::topics::service::{ORCHESTRATOR, REGISTRY};
use serde_json::{Value, json};

use super::{Cli, Client};
use crate::output;

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
    Start { name: String },
    /// Stop an app's services (they stay stopped until started).
    Stop { name: String },
    /// Restart an app's services.
    Restart { name: String },
    /// Enable an app (start it, and on every boot).
    Enable { name: String },
    /// Disable an app (stop it, and not on boot).
    Disable { name: String },
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
    let simple = |action: &'static str, name: String| (action, json!({ "name": name }));
    let result = match cmd {
        AppCommand::Ls { json } => list(&client, json).await,
        AppCommand::Install { file, name, force, env } => super::install::run(&client, &file, name, force, &env).await,
        AppCommand::Start { name } => action(&client, simple("start", name)).await,
        AppCommand::Stop { name } => action(&client, simple("stop", name)).await,
        AppCommand::Restart { name } => action(&client, simple("restart", name)).await,
        AppCommand::Enable { name } => action(&client, simple("enable", name)).await,
        AppCommand::Disable { name } => action(&client, simple("disable", name)).await,
        AppCommand::Rm { name, keep_data } => remove(&client, &name, keep_data).await,
        AppCommand::Logs { name, tail, since } => {
            let args = json!({ "name": name, "tail": tail, "since": since });
            let reply = client.request(ORCHESTRATOR, "logs", &args).await?;
            for line in reply["lines"].as_array().into_iter().flatten() {
                output::line(line.as_str().unwrap_or_default());
            }
            Ok(())
        }
        AppCommand::Status { name, json } => {
            let reply = client.request(ORCHESTRATOR, "status", &json!({ "name": name })).await?;
            if json {
                return output::json(&reply);
            }
            let s = &reply["status"];
            let mut rows: Vec<Vec<String>> = ["health", "replicas", "running", "last_started", "error"]
                .iter()
                .map(|k| {
                    vec![
                        k.to_string(),
                        s[k].as_str().map(str::to_owned).unwrap_or_else(|| s[k].to_string()),
                    ]
                })
                .collect();
            rows[0][1] = health_text(s);
            output::table(&["STATUS", &name], &rows);
            Ok(())
        }
        AppCommand::Show { name, json } => {
            let reply = client.request(REGISTRY, "app.get", &json!({ "name": name })).await?;
            if json {
                output::json(&reply)
            } else {
                print_app(&serde_json::from_value(reply)?);
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
        Ok(()) => client
            .request(ORCHESTRATOR, "status", &json!({}))
            .await
            .map_err(|e| NoStatus::Down(e.code.to_string())),
        Err(_) if client.liveness_of(ORCHESTRATOR) == Some(Liveness::Starting) => Err(NoStatus::Starting),
        Err(_) => Err(NoStatus::Down("down".into())),
    };
    let reply = client.request(REGISTRY, "app.list", &json!({})).await?;
    if json {
        let status = statuses.as_ref().ok().cloned().unwrap_or(Value::Null);
        return output::json(&json!({ "apps": reply, "status": status }));
    }
    let apps: Vec<AppRecord> = serde_json::from_value(reply)?;
    print_list(&apps, &statuses);
    Ok(())
}

/// `app rm`: says what could not be removed.
async fn remove(client: &Client, name: &str, keep_data: bool) -> anyhow::Result<()> {
    let reply = client
        .request(ORCHESTRATOR, "remove", &json!({ "name": name, "keep_data": keep_data }))
        .await?;
    output::line(&format!("{name}: remove done"));
    for volume in reply["volumes_left"].as_array().into_iter().flatten() {
        output::line(&format!(
            "warning: volume {} could not be removed (still in use?): remove it with `docker volume rm {0}`",
            volume.as_str().unwrap_or("?")
        ));
    }
    Ok(())
}

/// An app's health as people read it.
fn health_text(status: &Value) -> String {
    match status["health"].as_str() {
        Some("not_deployed") => "not deployed".into(),
        Some(h) => h.into(),
        None => "?".into(),
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

/// A lifecycle command; prints what the orchestrator answered.
async fn action(client: &Client, (action, args): (&str, Value)) -> anyhow::Result<()> {
    let reply = client.request(ORCHESTRATOR, action, &args).await?;
    output::line(&format!("{}: {action} done", reply["app"].as_str().unwrap_or_default()));
    Ok(())
}

fn print_list(apps: &[AppRecord], statuses: &Result<Value, NoStatus>) {
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
                    Ok(all) => match &all[&r.app.name] {
                        Value::Null => "-".to_owned(),
                        s if s["health"] == "not_deployed" => "not deployed".to_owned(),
                        s => format!("{} {}", health_text(s), s["replicas"].as_str().unwrap_or("")),
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
