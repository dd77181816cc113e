//! `cubeos app install`: sends the install, then draws a progress bar from the
//! job's progress events until it is done or failed.

use std::io::{IsTerminal, Write};

use anyhow::{Context as _, bail};
use cubeos_orchestrator::service::Progress;
use cubeos_shared::topics::{self, service::ORCHESTRATOR};
use cubeos_shared::{Bus, validate};
use serde_json::json;

use super::compose_file::ComposeFile;
use crate::output;

const BAR: usize = 24;

pub async fn run(bus: &Bus, file: &str, name: Option<String>, force: bool, env: &[String]) -> anyhow::Result<()> {
    let ComposeFile { text, name } = ComposeFile::read(file, name)?;
    let mut vars = serde_json::Map::new();
    for pair in env {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair}: expected VAR=VALUE"))?;
        vars.insert(k.to_owned(), json!(v));
    }
    validate::name("name", &name)?;
    // Subscribe before asking, so that no progress event is missed.
    let mut events = bus
        .subscribe(&topics::app_progress(&name), rumqttc::QoS::AtMostOnce)
        .await?;
    let reply = bus
        .request(
            ORCHESTRATOR,
            "install",
            &json!({ "compose": text, "name": name, "force": force, "env": vars }),
        )
        .await?;
    let job = reply["job"]
        .as_str()
        .context("the orchestrator's reply names no job")?
        .to_owned();
    let tty = std::io::stdout().is_terminal();
    while let Some(msg) = events.recv().await {
        let Ok(event) = serde_json::from_slice::<Progress>(&msg.payload) else {
            continue;
        };
        if event.job != job {
            continue;
        }
        let of = event.of.max(1);
        let step = event.step.min(of);
        let filled = BAR * step / of;
        let line = format!(
            "[{}{}] {step}/{of} {}: {}",
            "#".repeat(filled),
            "-".repeat(BAR - filled),
            event.name,
            event.message
        );
        if tty {
            // Redraw one line in place.
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K{line}");
            let _ = out.flush();
        } else {
            output::line(&line);
        }
        match event.status.as_str() {
            "done" => {
                if tty {
                    output::line("");
                }
                output::line(&format!("{name}: installed"));
                return Ok(());
            }
            "failed" => {
                if tty {
                    output::line("");
                }
                bail!("{name}: {}", event.message);
            }
            _ => {}
        }
    }
    bail!("the connection closed before the install finished")
}
