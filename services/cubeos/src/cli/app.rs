//! `cubeos app ...`

use clap::Subcommand;
use cubeos_shared::Config;
use cubeos_shared::models::AppRecord;
use cubeos_shared::topics::service::{ORCHESTRATOR, REGISTRY};
use serde_json::{Value, json};

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

pub async fn run(config: &Config, cmd: AppCommand) -> anyhow::Result<()> {
    if let AppCommand::Preview {
        file,
        name,
        json,
        force,
    } = cmd
    {
        return super::preview::run(config, &file, name, json, force);
    }
    let bus = super::connect(config).await?;
    let simple = |action: &'static str, name: String| (action, json!({ "name": name }));
    let result = match cmd {
        AppCommand::Ls { json } => {
            let reply = bus.request(REGISTRY, "app.list", &json!({})).await?;
            // Runtime status comes from the orchestrator; without it the column says so.
            let statuses = bus
                .request(ORCHESTRATOR, "status", &json!({}))
                .await
                .unwrap_or(Value::Null);
            if json {
                output::json(&json!({ "apps": reply, "status": statuses }))
            } else {
                let apps: Vec<AppRecord> = serde_json::from_value(reply)?;
                print_list(&apps, &statuses);
                Ok(())
            }
        }
        AppCommand::Install { file, name, force, env } => super::install::run(&bus, &file, name, force, &env).await,
        AppCommand::Start { name } => action(&bus, simple("start", name)).await,
        AppCommand::Stop { name } => action(&bus, simple("stop", name)).await,
        AppCommand::Restart { name } => action(&bus, simple("restart", name)).await,
        AppCommand::Enable { name } => action(&bus, simple("enable", name)).await,
        AppCommand::Disable { name } => action(&bus, simple("disable", name)).await,
        AppCommand::Rm { name, keep_data } => {
            action(&bus, ("remove", json!({ "name": name, "keep_data": keep_data }))).await
        }
        AppCommand::Logs { name, tail, since } => {
            let reply = bus
                .request(
                    ORCHESTRATOR,
                    "logs",
                    &json!({ "name": name, "tail": tail, "since": since }),
                )
                .await?;
            for line in reply["lines"].as_array().into_iter().flatten() {
                output::line(line.as_str().unwrap_or_default());
            }
            Ok(())
        }
        AppCommand::Status { name, json } => {
            let reply = bus.request(ORCHESTRATOR, "status", &json!({ "name": name })).await?;
            if json {
                return output::json(&reply);
            }
            let s = &reply["status"];
            let rows: Vec<Vec<String>> = ["health", "replicas", "running", "last_started", "error"]
                .iter()
                .map(|k| {
                    vec![
                        k.to_string(),
                        s[k].as_str().map(str::to_owned).unwrap_or_else(|| s[k].to_string()),
                    ]
                })
                .collect();
            output::table(&["STATUS", &name], &rows);
            Ok(())
        }
        AppCommand::Show { name, json } => {
            let reply = bus.request(REGISTRY, "app.get", &json!({ "name": name })).await?;
            if json {
                output::json(&reply)
            } else {
                print_app(&serde_json::from_value(reply)?);
                Ok(())
            }
        }
        AppCommand::Preview { .. } => unreachable!("handled above"),
    };
    bus.shutdown().await;
    result
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
async fn action(bus: &cubeos_shared::Bus, (action, args): (&str, Value)) -> anyhow::Result<()> {
    let reply = bus.request(ORCHESTRATOR, action, &args).await?;
    output::line(&format!("{}: {action} done", reply["app"].as_str().unwrap_or_default()));
    Ok(())
}

fn print_list(apps: &[AppRecord], statuses: &Value) {
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|r| {
            vec![
                r.app.name.clone(),
                r.app.app_type.as_str().to_owned(),
                if r.app.enabled { "yes" } else { "no" }.to_owned(),
                ports_of(r),
                r.fqdns.iter().map(|f| f.fqdn.as_str()).collect::<Vec<_>>().join(","),
                match &statuses[&r.app.name] {
                    Value::Null if statuses.is_null() => "(orchestrator down)".to_owned(),
                    Value::Null => "-".to_owned(),
                    s => format!(
                        "{} {}",
                        s["health"].as_str().unwrap_or("?"),
                        s["replicas"].as_str().unwrap_or("")
                    ),
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
