//! `cubeos app install`: sends the install, then draws a progress bar from the
//! job's progress events until it is done or failed.

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context as _, bail};
use cubeos_shared::topics::{self, service::ORCHESTRATOR};
use cubeos_shared::{Bus, validate};
use serde_json::{Value, json};

use crate::output;

const BAR: usize = 24;

pub async fn run(bus: &Bus, file: &str, name: Option<String>, force: bool, env: &[String]) -> anyhow::Result<()> {
    let text = if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?
    };
    let mut vars = serde_json::Map::new();
    for pair in env {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair}: expected VAR=VALUE"))?;
        vars.insert(k.to_owned(), json!(v));
    }
    let name = name
        .or_else(|| cubeos_orchestrator::compose::declared_name(&text))
        .unwrap_or_else(|| stem(file));
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

fn stem(file: &str) -> String {
    std::path::Path::new(file)
        .file_stem()
        .map(|s| {
            s.to_string_lossy()
                .to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        })
        .unwrap_or_else(|| "app".into())
}
