//! The one way a service runs a system tool (`nginx -t`, `kill -HUP`, and for the
//! services to come `ip`, `nft`, `mount`, `hostapd`, ...).
//!
//! Every run has a timeout (the process is killed when it passes), its output
//! captured and bounded, and an error that says which command failed and why.
//! A secret goes to the tool on its standard input, never on its command line,
//! so it appears in no process list, log line or error. Services hold a
//! [`Host`] (`Arc<dyn Host>`): [`System`] runs the tools; [`Recording`] records
//! the commands and answers from a script, for unit tests.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use zeroize::Zeroizing;

/// The most of a tool's output kept, per stream.
const OUTPUT_LIMIT: usize = 64 * 1024;

/// How long a tool may run unless its command says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A tool to run: its program, arguments (never secret), a secret for its
/// standard input if it reads one, and how long it may take.
#[derive(Clone)]
pub struct HostCommand {
    pub program: String,
    pub args: Vec<String>,
    stdin: Option<Zeroizing<String>>,
    pub timeout: Duration,
}

impl HostCommand {
    /// `program` with no arguments yet.
    pub fn new(program: impl Into<String>) -> HostCommand {
        HostCommand {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A configured command line (`["nginx", "-s", "reload"]`); `None` when it is
    /// empty.
    pub fn from_argv(argv: &[String]) -> Option<HostCommand> {
        let (program, args) = argv.split_first()?;
        Some(HostCommand::new(program.clone()).args(args.iter().cloned()))
    }

    /// Adds arguments.
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<String>>) -> HostCommand {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// A secret the tool reads from its standard input.
    pub fn secret_stdin(mut self, secret: Zeroizing<String>) -> HostCommand {
        self.stdin = Some(secret);
        self
    }

    /// Its own timeout.
    pub fn timeout(mut self, timeout: Duration) -> HostCommand {
        self.timeout = timeout;
        self
    }
}

/// The command line as logs and errors show it: no secret is ever part of it.
impl std::fmt::Display for HostCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.program)?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        if self.stdin.is_some() {
            write!(f, " <secret on stdin>")?;
        }
        Ok(())
    }
}

/// What a tool printed, when it succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOutput {
    pub stdout: String,
    pub stderr: String,
}

/// Why a tool did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("cannot run {command}: {reason}")]
    Spawn { command: String, reason: String },
    #[error("{command} did not finish within {after:?}")]
    Timeout { command: String, after: Duration },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

/// A future of a tool's outcome.
pub type Running<'a> = Pin<Box<dyn Future<Output = Result<HostOutput, HostError>> + Send + 'a>>;

/// Runs system tools.
pub trait Host: Send + Sync {
    /// Runs `command` to its end (or its timeout).
    fn run<'a>(&'a self, command: &'a HostCommand) -> Running<'a>;
}

/// The real host: tools run as child processes.
pub struct System;

impl Host for System {
    fn run<'a>(&'a self, command: &'a HostCommand) -> Running<'a> {
        Box::pin(async move {
            let shown = command.to_string();
            let mut child = tokio::process::Command::new(&command.program)
                .args(&command.args)
                .stdin(if command.stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| HostError::Spawn {
                    command: shown.clone(),
                    reason: e.to_string(),
                })?;
            let stdin = child.stdin.take();
            // The secret is written under the same timeout: a tool that never
            // reads it cannot hold the service up.
            let finished = async {
                if let (Some(secret), Some(mut stdin)) = (&command.stdin, stdin) {
                    // A tool that exits without reading is its own failure, below;
                    // dropping `stdin` here gives it end of file.
                    let _ = stdin.write_all(secret.as_bytes()).await;
                }
                child.wait_with_output().await
            };
            let out = tokio::time::timeout(command.timeout, finished)
                .await
                .map_err(|_| HostError::Timeout {
                    command: shown.clone(),
                    after: command.timeout,
                })?
                .map_err(|e| HostError::Spawn {
                    command: shown.clone(),
                    reason: e.to_string(),
                })?;
            let text = |bytes: &[u8]| String::from_utf8_lossy(&bytes[..bytes.len().min(OUTPUT_LIMIT)]).into_owned();
            if out.status.success() {
                Ok(HostOutput {
                    stdout: text(&out.stdout),
                    stderr: text(&out.stderr),
                })
            } else {
                Err(HostError::Failed {
                    command: shown,
                    status: out.status.to_string(),
                    stderr: cubeos_contract::validate::truncate(text(&out.stderr).trim(), 400),
                })
            }
        })
    }
}

/// A host for unit tests: records every command line and answers from a
/// script, in order (success with no output once the script is used up).
#[derive(Default)]
pub struct Recording {
    calls: std::sync::Mutex<Vec<String>>,
    script: std::sync::Mutex<VecDeque<Result<HostOutput, HostError>>>,
}

impl Recording {
    /// A host answering `script` in order.
    pub fn answering(script: impl IntoIterator<Item = Result<HostOutput, HostError>>) -> Recording {
        Recording {
            calls: Default::default(),
            script: std::sync::Mutex::new(script.into_iter().collect()),
        }
    }

    /// The command lines run so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Host for Recording {
    fn run<'a>(&'a self, command: &'a HostCommand) -> Running<'a> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(command.to_string());
        let answer = self
            .script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .unwrap_or_else(|| Ok(HostOutput::default()));
        Box::pin(async move { answer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tool_gets_its_secret_on_stdin_and_never_shows_it() {
        let secret = Zeroizing::new("hunter2-not-on-argv".to_owned());
        let command = HostCommand::new("sh")
            .args(["-c", "read line; printf %s \"$line\""])
            .secret_stdin(secret);
        assert!(!command.to_string().contains("hunter2"), "{command}");
        let out = System.run(&command).await.unwrap();
        assert_eq!(out.stdout, "hunter2-not-on-argv");
    }

    #[tokio::test]
    async fn failures_and_timeouts_say_which_command() {
        let failed = System
            .run(&HostCommand::new("sh").args(["-c", "echo broken >&2; exit 3"]))
            .await
            .unwrap_err();
        assert!(
            matches!(&failed, HostError::Failed { command, stderr, .. } if command.starts_with("sh -c") && stderr == "broken"),
            "{failed}"
        );
        let slow = HostCommand::new("sleep")
            .args(["5"])
            .timeout(Duration::from_millis(100));
        let timed_out = System.run(&slow).await.unwrap_err();
        assert!(matches!(timed_out, HostError::Timeout { .. }), "{timed_out}");
        let missing = System.run(&HostCommand::new("/nonexistent/tool")).await.unwrap_err();
        assert!(matches!(missing, HostError::Spawn { .. }), "{missing}");
    }

    #[tokio::test]
    async fn the_recording_host_answers_its_script_in_order() {
        let host = Recording::answering([Err(HostError::Timeout {
            command: "x".into(),
            after: Duration::from_secs(1),
        })]);
        assert!(host.run(&HostCommand::new("nginx").args(["-t"])).await.is_err());
        assert!(
            host.run(&HostCommand::new("nginx").args(["-s", "reload"]))
                .await
                .is_ok()
        );
        assert_eq!(host.calls(), ["nginx -t", "nginx -s reload"]);
    }
}
