//! `cubeos token ...`: credentials for hardware devices and node agents.

use clap::Subcommand;
use cubeos_shared::topics::service::REGISTRY;
use serde_json::{Value, json};

use super::{Cli, Client};
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
    /// Revoke a token by its id, or every token of a device or node by its name;
    /// connections using them end at once.
    Revoke {
        /// A token id, or a device / node name.
        id: String,
    },
}

pub async fn run(cli: &Cli, cmd: TokenCommand) -> anyhow::Result<()> {
    let client = Client::connect(cli).await?;
    let result = async {
        match cmd {
            TokenCommand::Issue { kind, id } => {
                let mut reply = client
                    .request(REGISTRY, "token.issue", &json!({ "kind": kind, "id": id }))
                    .await?;
                client.open(&mut reply);
                output::line(&format!(
                    "{} {}: sign in with username '{}' (or the token id '{}') and this password (shown once):",
                    reply["kind"].as_str().unwrap_or("?"),
                    reply["subject"].as_str().unwrap_or("?"),
                    reply["subject"].as_str().unwrap_or("?"),
                    reply["id"].as_str().unwrap_or("?"),
                ));
                output::line(reply["token"].as_str().unwrap_or_default());
            }
            TokenCommand::Ls { json } => {
                let reply = client.request(REGISTRY, "token.list", &json!({})).await?;
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
                let reply = client.request(REGISTRY, "token.revoke", &json!({ "id": id })).await?;
                let ids: Vec<&str> = reply["revoked"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                output::line(&format!("revoked {id}: {} token(s) ({})", ids.len(), ids.join(", ")));
            }
        }
        Ok(())
    }
    .await;
    client.shutdown().await;
    result
}
