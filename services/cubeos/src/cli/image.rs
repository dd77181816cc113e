//! `cubeos image ls` and `cubeos image load <file.tar>`: an offline box runs only
//! the images it has, so these say which it has and bring the ones it lacks.

use std::path::PathBuf;

use clap::Subcommand;
use cubeos_shared::BusError;
use cubeos_shared::topics::{self, service::ORCHESTRATOR};
use serde_json::{Value, json};

use super::progress::{self, Bar, Ended};
use super::{Cli, Client};
use crate::output;

#[derive(Subcommand)]
pub enum ImageCommand {
    /// The images installed apps use, and whether each is on the box.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Load an image archive (what `docker save` writes) into Docker on the box,
    /// with progress. The file must be on the box.
    Load { file: PathBuf },
}

pub async fn run(cli: &Cli, cmd: ImageCommand) -> anyhow::Result<()> {
    let client = Client::connect(cli).await?;
    let result = match cmd {
        ImageCommand::Ls { json } => list(&client, json).await,
        ImageCommand::Load { file } => load(&client, file).await,
    };
    client.shutdown().await;
    result
}

async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let reply = client.request(ORCHESTRATOR, "image.list", &json!({})).await?;
    if json {
        return output::json(&reply);
    }
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let rows: Vec<Vec<String>> = reply["images"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let apps: Vec<String> = i["apps"].as_array().into_iter().flatten().map(text).collect();
            vec![
                text(&i["image"]),
                match i["location"].as_str() {
                    Some("node") => "yes".into(),
                    Some("registry") => "yes (local registry)".into(),
                    _ => "MISSING".into(),
                },
                i["size"]
                    .as_i64()
                    .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                    .unwrap_or_default(),
                apps.join(", "),
            ]
        })
        .collect();
    output::table(&["IMAGE", "PRESENT", "SIZE", "APPS"], &rows);
    if let Some(n) = reply["other_nodes_unchecked"].as_u64().filter(|n| *n > 0) {
        output::line(&format!(
            "note: {n} other Swarm node(s) not checked: a service placed there needs the image there too"
        ));
    }
    Ok(())
}

async fn load(client: &Client, file: PathBuf) -> anyhow::Result<()> {
    let path = std::path::absolute(&file).map_err(|e| BusError::bad_request(format!("{}: {e}", file.display())))?;
    let mut events = client
        .bus
        .subscribe(&topics::image_progress(), rumqttc::QoS::AtMostOnce)
        .await?;
    let reply = client
        .request(
            ORCHESTRATOR,
            "image.load",
            &json!({ "path": path.display().to_string() }),
        )
        .await?;
    let job = reply["job"]
        .as_str()
        .ok_or_else(|| BusError::internal("the orchestrator's reply names no job"))?
        .to_owned();
    let mut bar = Bar::new();
    let ended = progress::follow(client, &mut events, &job, &mut bar).await?;
    bar.finish();
    match ended {
        Ended::Done(event) => {
            output::line(&event.message);
            Ok(())
        }
        Ended::Failed(event) => Err(BusError::bad_request(format!("{}: {}", file.display(), event.message)).into()),
        Ended::Lost => Err(BusError::unavailable(format!(
            "{}: the load was interrupted by a restart of CubeOS; run it again",
            file.display()
        ))
        .into()),
    }
}
