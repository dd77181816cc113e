//! `cubeos state ...`

use clap::Subcommand;
use cubeos_contract::api::registry::{Settings, StateGet, StateSet};

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
            StateCommand::Get { key, json } => {
                let reply = client.call(&StateGet { key }).await?;
                if json {
                    return output::json(&reply);
                }
                match reply {
                    Settings::One(setting) => output::line(&setting.value),
                    Settings::All(all) => {
                        let rows: Vec<Vec<String>> = all.into_iter().map(|(k, v)| vec![k, v]).collect();
                        output::table(&["KEY", "VALUE"], &rows);
                    }
                }
                Ok(())
            }
            StateCommand::Set { key, value } => {
                let setting = client.call(&StateSet { key, value }).await?;
                output::line(&format!("{} = {}", setting.key, setting.value));
                Ok(())
            }
        }
    }
    .await;
    client.shutdown().await;
    result
}
