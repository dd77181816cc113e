//! `cubeos state ...`

use std::collections::BTreeMap;

use clap::Subcommand;
use cubeos_shared::models::Setting;
use cubeos_shared::topics::service::REGISTRY;
use serde_json::json;

use super::{Cli, Client};
use crate::output;

#[derive(Subcommand)]
pub enum StateCommand {
    /// Print one key's value, or every key.
    Get {
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Set a key.
    Set { key: String, value: String },
}

pub async fn run(cli: &Cli, cmd: StateCommand) -> anyhow::Result<()> {
    let client = Client::connect(cli).await?;
    let result = async {
        match cmd {
            StateCommand::Get { key: Some(key), json } => {
                let reply = client.request(REGISTRY, "state.get", &json!({ "key": key })).await?;
                if json {
                    return output::json(&reply);
                }
                let setting: Setting = serde_json::from_value(reply)?;
                output::line(&setting.value);
                Ok(())
            }
            StateCommand::Get { key: None, json } => {
                let reply = client.request(REGISTRY, "state.get", &json!({})).await?;
                if json {
                    return output::json(&reply);
                }
                let all: BTreeMap<String, String> = serde_json::from_value(reply)?;
                let rows: Vec<Vec<String>> = all.into_iter().map(|(k, v)| vec![k, v]).collect();
                output::table(&["KEY", "VALUE"], &rows);
                Ok(())
            }
            StateCommand::Set { key, value } => {
                let reply = client
                    .request(REGISTRY, "state.set", &json!({ "key": key, "value": value }))
                    .await?;
                let setting: Setting = serde_json::from_value(reply)?;
                output::line(&format!("{} = {}", setting.key, setting.value));
                Ok(())
            }
        }
    }
    .await;
    client.shutdown().await;
    result
}
