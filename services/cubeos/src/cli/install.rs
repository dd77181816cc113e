//! `cubeos app install`: sends the install, then draws a progress bar from the
//! job's progress events until it is done or failed.
//!
//! It never waits forever ([`progress::follow`]). When CubeOS restarts in the
//! middle, the orchestrator no longer knows the job; the app tells the outcome: a
//! restart rolls back an install it had not finished before it goes online, so the
//! app is there only if the install completed.

use std::collections::BTreeMap;

use cubeos_contract::api::orchestrator::Install;
use cubeos_contract::api::registry::AppGet;
use cubeos_contract::{topics, validate};
use cubeos_kit::{BusError, ErrorCode};

use super::Client;
use super::compose_file::ComposeFile;
use super::progress::{self, Bar, Ended};
use crate::output;

pub async fn run(client: &Client, file: &str, name: Option<String>, force: bool, env: &[String]) -> anyhow::Result<()> {
    let ComposeFile { text, name } = ComposeFile::read(file, name)?;
    let mut vars = BTreeMap::new();
    for pair in env {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| BusError::bad_request(format!("--env {pair}: expected VAR=VALUE")))?;
        vars.insert(k.to_owned(), v.to_owned());
    }
    validate::name("name", &name).map_err(BusError::from)?;
    // Subscribe before asking, so that no progress event is missed.
    let mut events = client
        .bus
        .subscribe(&topics::app_progress(&name), rumqttc::QoS::AtMostOnce)
        .await?;
    let install = Install {
        compose: Some(text),
        name: Some(name.clone()),
        force,
        env: vars,
        ..Install::default()
    };
    let job = client.call(&install).await?.job;
    let mut bar = Bar::new();
    let ended = progress::follow(client, &mut events, &job, &mut bar).await?;
    bar.finish();
    let failure = match ended {
        Ended::Done(_) => None,
        Ended::Failed(event) => Some(BusError::new(
            event.code.unwrap_or(ErrorCode::Internal),
            format!("{name}: {}", event.message),
        )),
        Ended::Lost => match client.call(&AppGet { name: name.clone() }).await {
            Ok(_) => None,
            Err(e) if e.code == ErrorCode::NotFound => Some(BusError::unavailable(format!(
                "{name}: the install was interrupted by a restart of CubeOS and rolled back"
            ))),
            Err(e) => return Err(e.into()),
        },
    };
    match failure {
        None => {
            output::line(&format!("{name}: installed"));
            Ok(())
        }
        Some(e) => Err(e.into()),
    }
}
