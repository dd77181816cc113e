//! `cubeos token ...`: credentials for hardware devices and node agents.

use clap::Subcommand;
use cubeos_shared::Config;
use cubeos_shared::topics::service::REGISTRY;
use serde_json::{Value, json};

use crate::output;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Issue a token bound to a device or node id; it is shown once.
    Issue {
        /// device or node.
        kind: String,
        id: String,
    },
    /// List device and node tokens (never their values).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id; connections using it end at once.
    Revoke { id: String },
}

pub async fn run(config: &Config, cmd: TokenCommand) -> anyhow::Result<()> {
    let client = super::connect_client(config).await?;
    let result = async {
        match cmd {
            TokenCommand::Issue { kind, id } => {
                let mut reply = client
                    .bus
                    .request(REGISTRY, "token.issue", &json!({ "kind": kind, "id": id }))
                    .await?;
                client.open(&mut reply);
                output::line(&format!(
                    "{} {}: sign in with username '{}' and this password (shown once):",
                    reply["kind"].as_str().unwrap_or("?"),
                    reply["id"].as_str().unwrap_or("?"),
                    reply["subject"].as_str().unwrap_or("?"),
                ));
                output::line(reply["token"].as_str().unwrap_or_default());
            }
            TokenCommand::Ls { json } => {
                let reply = client.bus.request(REGISTRY, "token.list", &json!({})).await?;
                if json {
                    return output::json(&reply);
                }
                let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
                let rows: Vec<Vec<String>> = reply
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|t| {
                                vec![
                                    text(t, "id"),
                                    text(t, "kind"),
                                    text(t, "subject"),
                                    text(t, "created_at"),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                output::table(&["ID", "KIND", "BOUND TO", "CREATED"], &rows);
            }
            TokenCommand::Revoke { id } => {
                client
                    .bus
                    .request(REGISTRY, "token.revoke", &json!({ "id": id }))
                    .await?;
                output::line(&format!("revoked {id}"));
            }
        }
        Ok(())
    }
    .await;
    client.shutdown().await;
    result
}
