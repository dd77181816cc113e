//! `cubeos app ...`

use clap::Subcommand;
use cubeos_shared::models::AppRecord;
use cubeos_shared::{Config, topics::service::REGISTRY};
use serde_json::json;

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
    let result = match cmd {
        AppCommand::Ls { json } => {
            let reply = bus.request(REGISTRY, "app.list", &json!({})).await?;
            if json {
                output::json(&reply)
            } else {
                let apps: Vec<AppRecord> = serde_json::from_value(reply)?;
                print_list(&apps);
                Ok(())
            }
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

fn print_list(apps: &[AppRecord]) {
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|r| {
            vec![
                r.app.name.clone(),
                serde_json::to_value(r.app.app_type)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                if r.app.enabled { "yes" } else { "no" }.to_owned(),
                ports_of(r),
                r.fqdns.iter().map(|f| f.fqdn.as_str()).collect::<Vec<_>>().join(","),
            ]
        })
        .collect();
    output::table(&["NAME", "TYPE", "ENABLED", "PORTS", "FQDNS"], &rows);
}

fn print_app(r: &AppRecord) {
    let a = &r.app;
    let field = |k: &str, v: &str| vec![k.to_owned(), v.to_owned()];
    let rows = vec![
        field("name", &a.name),
        field("display name", &a.display_name),
        field("description", &a.description),
        field(
            "type",
            serde_json::to_value(a.app_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .as_deref()
                .unwrap_or(""),
        ),
        field("category", &a.category),
        field(
            "source",
            serde_json::to_value(a.source)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .as_deref()
                .unwrap_or(""),
        ),
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
