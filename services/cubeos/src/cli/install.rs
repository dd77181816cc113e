//! `cubeos app install`: sends the install, then draws a progress bar from the
//! job's progress events until it is done or failed.

use std::io::{IsTerminal, Write};

use anyhow::{Context as _, bail};
use cubeos_shared::topics::{self, service::ORCHESTRATOR};
use cubeos_shared::{Bus, validate};
use serde_json::{Value, json};

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
    let job = reply["job"].as_str().unwrap_or_default().to_owned();
    let tty = std::io::stdout().is_terminal();
    while let Some(msg) = events.recv().await {
        let Ok(event) = serde_json::from_slice::<Value>(&msg.payload) else {
            continue;
        };
        if event["job"] != job.as_str() {
            continue;
        }
        let (step, of) = (
            event["step"].as_u64().unwrap_or(0) as usize,
            event["of"].as_u64().unwrap_or(1).max(1) as usize,
        );
        let filled = BAR * step.min(of) / of;
        let line = format!(
            "[{}{}] {step}/{of} {}: {}",
            "#".repeat(filled),
            "-".repeat(BAR - filled),
            event["name"].as_str().unwrap_or_default(),
            event["message"].as_str().unwrap_or_default()
        );
        if tty {
            // Redraw one line in place.
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K{line}");
            let _ = out.flush();
        } else {
            output::line(&line);
        }
        match event["status"].as_str() {
            Some("done") => {
                if tty {
                    output::line("");
                }
                output::line(&format!("{name}: installed"));
                return Ok(());
            }
            Some("failed") => {
                if tty {
                    output::line("");
                }
                bail!("{name}: {}", event["message"].as_str().unwrap_or("install failed"));
            }
            _ => {}
        }
    }
    bail!("the connection closed before the install finished")
}
