//! Following a long job (an install, an image load): its progress bar, drawn from
//! its progress events (redrawn in place on a terminal, one line per event
//! otherwise), and [`follow`], which never waits forever.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use cubeos_contract::api::orchestrator::{JobGet, Progress};
use cubeos_contract::liveness::Liveness;
use cubeos_contract::topics::service::ORCHESTRATOR;
use cubeos_kit::bus::Message;
use cubeos_kit::{BusError, ErrorCode};
use tokio::sync::mpsc;

use super::Client;
use crate::output;

const WIDTH: usize = 24;

/// One job's bar.
pub struct Bar {
    tty: bool,
    /// Whether the cursor is at the end of a bar drawn in place.
    open: bool,
}

impl Bar {
    pub fn new() -> Bar {
        Bar {
            tty: std::io::stdout().is_terminal(),
            open: false,
        }
    }

    /// Draws one event.
    pub fn draw(&mut self, event: &Progress) {
        let of = event.of.max(1);
        let step = event.step.min(of);
        // A step still running is not done yet: its share is drawn once it is.
        let done = if event.status == "done" {
            step
        } else {
            step.saturating_sub(1)
        };
        let filled = WIDTH * done / of;
        let line = format!(
            "[{}{}] {step}/{of} {}: {}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            event.name,
            event.message
        );
        if self.tty {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K{line}");
            let _ = out.flush();
            self.open = true;
        } else {
            output::line(&line);
        }
    }

    /// A line of its own below the bar (the bar is redrawn by the next event).
    pub fn note(&mut self, text: &str) {
        self.finish();
        output::line(text);
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.open {
            output::line("");
            self.open = false;
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}

/// How a followed job ended.
pub enum Ended {
    Done(Progress),
    Failed(Progress),
    /// The orchestrator restarted and no longer knows the job.
    Lost,
}

/// How long a job's events may go quiet before the job is asked for: a lost event
/// (QoS 0) must not leave the CLI waiting.
const QUIET: Duration = Duration::from_secs(15);

/// Follows `job` on `events` (subscribed before the job was started), drawing it,
/// until it ends. It never waits forever: when the events go quiet it asks the
/// orchestrator (`job.get`); when CubeOS goes away (the connection drops, or the
/// orchestrator goes offline) it waits up to `--wait` for it to come back, then
/// asks again.
pub async fn follow(
    client: &Client,
    events: &mut mpsc::UnboundedReceiver<Message>,
    job: &str,
    bar: &mut Bar,
) -> Result<Ended, BusError> {
    let mut connected = client.bus.watch_connected();
    let mut liveness = client.watch_liveness();
    loop {
        let gone = !*connected.borrow() || client.liveness_of(ORCHESTRATOR) != Some(Liveness::Online);
        if gone {
            bar.note(&format!(
                "lost contact with CubeOS; waiting up to {:?} for it to come back",
                client.wait()
            ));
            wait_back(client).await?;
            match job_state(client, job).await? {
                Some(event) => {
                    bar.draw(&event);
                    if let Some(ended) = ended(event) {
                        return Ok(ended);
                    }
                }
                None => return Ok(Ended::Lost),
            }
        }
        tokio::select! {
            msg = events.recv() => {
                let Some(msg) = msg else { return Err(BusError::unavailable("the bus client stopped")) };
                let Ok(event) = serde_json::from_slice::<Progress>(&msg.payload) else { continue };
                if event.job != job {
                    continue;
                }
                bar.draw(&event);
                if let Some(ended) = ended(event) {
                    return Ok(ended);
                }
            }
            _ = connected.changed() => {}
            _ = liveness.changed() => {}
            _ = tokio::time::sleep(QUIET) => match job_state(client, job).await? {
                Some(event) => {
                    if let Some(ended) = ended(event) {
                        return Ok(ended);
                    }
                }
                None => return Ok(Ended::Lost),
            },
        }
    }
}

fn ended(event: Progress) -> Option<Ended> {
    match event.status.as_str() {
        "done" => Some(Ended::Done(event)),
        "failed" => Some(Ended::Failed(event)),
        _ => None,
    }
}

/// The job's last progress as the orchestrator has it; `None` when it no longer
/// knows the job.
async fn job_state(client: &Client, job: &str) -> Result<Option<Progress>, BusError> {
    match client.call(&JobGet { job: job.to_owned() }).await {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.code == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits (up to `--wait`) for the connection and the orchestrator to be back.
async fn wait_back(client: &Client) -> Result<(), BusError> {
    let back = tokio::time::timeout(client.wait(), async {
        let mut connected = client.bus.watch_connected();
        while !*connected.borrow_and_update() {
            if connected.changed().await.is_err() {
                return;
            }
        }
        let mut liveness = client.watch_liveness();
        while liveness.borrow_and_update().get(ORCHESTRATOR) != Some(&Liveness::Online) {
            if liveness.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    if back.is_err() || client.ready(ORCHESTRATOR).await.is_err() {
        return Err(BusError::unavailable(format!(
            "CubeOS did not come back within {:?}; what became of the job is unknown",
            client.wait()
        )));
    }
    Ok(())
}
