//! `cubeos store add|ls|search`: the offline app store on the box, imported from a
//! CasaOS store copy and listed with what would stop an install (missing images,
//! refusals).

use std::path::PathBuf;

use clap::Subcommand;
use cubeos_contract::api::store::{StoreAdd, StoreApp, StoreList};
use cubeos_kit::BusError;

use super::{Cli, Client};
use crate::output;

/// `cubeos store ...`.
#[derive(Subcommand)]
pub enum StoreCommand {
    /// Import a CasaOS app store copy on the box: a checkout of its repository
    /// (`Apps/<Name>/docker-compose.yml`), a folder of compose files, or a
    /// `.tar`/`.tar.gz` of one. Apps already in the store are replaced.
    Add { path: PathBuf },
    /// The store's apps, and which of them an install would refuse.
    Ls {
        /// Only the apps of this category (as `store ls --json` names them).
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The store's apps that have every word (in the id, title, tagline,
    /// description or category).
    Search {
        #[arg(required = true)]
        words: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `store` command against the box.
pub async fn run(cli: &Cli, cmd: StoreCommand) -> anyhow::Result<()> {
    let client = Client::connect(cli).await?;
    let result = match cmd {
        StoreCommand::Add { path } => add(&client, path).await,
        StoreCommand::Ls { category, json } => list(&client, StoreList { query: None, category }, json).await,
        StoreCommand::Search { words, json } => {
            let args = StoreList {
                query: Some(words.join(" ")),
                category: None,
            };
            list(&client, args, json).await
        }
    };
    client.shutdown().await;
    result
}

/// How long an import may take: a large archive on a Pi takes minutes, and the
/// reply comes when it is done.
const IMPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// `store add`: imports the store copy at `path` (made absolute: it is on the box).
async fn add(client: &Client, path: PathBuf) -> anyhow::Result<()> {
    let path = std::path::absolute(&path).map_err(|e| BusError::bad_request(format!("{}: {e}", path.display())))?;
    let reply = client
        .call_with_timeout(
            &StoreAdd {
                path: path.display().to_string(),
            },
            IMPORT_TIMEOUT,
        )
        .await?;
    output::line(&format!(
        "added {} apps ({} skipped)",
        reply.added.len(),
        reply.skipped.len()
    ));
    for why in &reply.skipped {
        output::line(&format!("  skipped {why}"));
    }
    Ok(())
}

/// `store ls` and `store search`: a table, or the reply as JSON.
async fn list(client: &Client, args: StoreList, json: bool) -> anyhow::Result<()> {
    let reply = client.call(&args).await?;
    if json {
        return output::json(&reply);
    }
    let rows: Vec<Vec<String>> = reply
        .apps
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                output::shorten(&a.title, 40),
                a.category.clone(),
                install_note(a),
            ]
        })
        .collect();
    output::table(&["ID", "TITLE", "CATEGORY", "INSTALL"], &rows);
    output::line(&format!("{} of {} apps", reply.apps.len(), reply.total));
    Ok(())
}

/// What would stop an install of the app: `ok`, else its missing images and refusal.
fn install_note(app: &StoreApp) -> String {
    let mut notes = Vec::new();
    if !app.missing_images.is_empty() {
        notes.push("missing images");
    }
    if !app.refusals.is_empty() {
        notes.push("refused without --force");
    }
    if notes.is_empty() {
        "ok".into()
    } else {
        notes.join(", ")
    }
}
