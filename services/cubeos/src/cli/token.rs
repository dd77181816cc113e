//! `cubeos token ...`: credentials for hardware devices and node agents.

use clap::Subcommand;
use cubeos_contract::api::registry::{TokenIssue, TokenKind, TokenList, TokenRevoke};
use cubeos_kit::{BusError, secrets};

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
                let kind = super::parse_word::<TokenKind>("kind", &kind)?;
                let issued = client.call(&TokenIssue { kind, id }).await?;
                let token = secrets::reveal_plain(&issued.token)
                    .ok_or_else(|| BusError::internal("the token came back sealed"))?;
                output::line(&format!(
                    "{} {}: sign in with username '{}' (or the token id '{}') and this password (shown once):",
                    issued.kind.as_str(),
                    issued.subject,
                    issued.subject,
                    issued.id,
                ));
                output::line(&token);
            }
            TokenCommand::Ls { json } => {
                let tokens = client.call(&TokenList {}).await?;
                if json {
                    return output::json(&tokens);
                }
                let rows: Vec<Vec<String>> = tokens
                    .into_iter()
                    .map(|t| vec![t.id, t.kind.as_str().to_owned(), t.subject, t.created_at])
                    .collect();
                output::table(&["ID", "KIND", "BOUND TO", "CREATED"], &rows);
            }
            TokenCommand::Revoke { id } => {
                let reply = client.call(&TokenRevoke { id: id.clone() }).await?;
                output::line(&format!(
                    "revoked {id}: {} token(s) ({})",
                    reply.revoked.len(),
                    reply.revoked.join(", ")
                ));
            }
        }
        Ok(())
    }
    .await;
    client.shutdown().await;
    result
}
