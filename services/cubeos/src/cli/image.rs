//! `cubeos image ls` and `cubeos image load <file.tar>`: an offline box runs only
//! the images it has, so these say which it has and bring the ones it lacks.

use std::path::PathBuf;

use clap::Subcommand;
use cubeos_contract::api::orchestrator::{ImageList, ImageLoad, Location};
use cubeos_contract::topics;
use cubeos_kit::BusError;

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
    let reply = client.call(&ImageList::default()).await?;
    if json {
        return output::json(&reply);
    }
    let rows: Vec<Vec<String>> = reply
        .images
        .iter()
        .map(|row| {
            let i = &row.state;
            vec![
                i.image.clone(),
                match i.location {
                    Some(Location::Node) => "yes".into(),
                    Some(Location::Registry) => "yes (local registry)".into(),
                    None => "MISSING".into(),
                },
                i.size
                    .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                    .unwrap_or_default(),
                row.apps.join(", "),
            ]
        })
        .collect();
    output::table(&["IMAGE", "PRESENT", "SIZE", "APPS"], &rows);
    let n = reply.other_nodes_unchecked;
    if n > 0 {
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
    let job = client
        .call(&ImageLoad {
            path: path.display().to_string(),
        })
        .await?
        .job;
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
