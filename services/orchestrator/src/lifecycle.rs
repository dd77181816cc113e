//! `start`, `stop`, `restart`, `enable`, `disable`, `remove` and `logs`.
//!
//! `start`, `stop`, `restart`, `enable` and `disable` ask Swarm for the change,
//! then reply with a job ([`LifecycleStep`]s) that follows Swarm until it has
//! carried the change out: every task running (and, on a one-node Swarm, the
//! app's port answering), or every task gone and the port closed. `remove`
//! replies once everything is gone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cubeos_contract::api::Command;
use cubeos_contract::api::orchestrator::*;
use cubeos_contract::api::registry::{AppDelete, AppUpdate};
use cubeos_contract::models::{AppRecord, Protocol};
use cubeos_contract::topics;
use cubeos_kit::job::{Job, Step};
use cubeos_kit::{BusError, ErrorCode};
use tracing::warn;

use crate::service::{Orchestrator, docker_error, other_nodes};
use crate::stack;

/// The steps of a lifecycle job: the change asked of Swarm, then Swarm carrying
/// it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleStep {
    Apply,
    Converge,
}

impl Step for LifecycleStep {
    const ALL: &'static [LifecycleStep] = &[LifecycleStep::Apply, LifecycleStep::Converge];

    fn name(self) -> &'static str {
        match self {
            LifecycleStep::Apply => "apply",
            LifecycleStep::Converge => "converge",
        }
    }
}

/// What a lifecycle job waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// Every task running, none of them one of `replaced` (a restart's old
    /// tasks), and on a one-node Swarm one of the app's TCP ports answering.
    Running { replaced: HashSet<String> },
    /// No task left, and none of the app's TCP ports answering.
    Stopped,
}

/// How often a lifecycle job looks at Swarm.
const CONVERGE_POLL: Duration = Duration::from_millis(500);

impl Orchestrator {
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<AppChanged, BusError> {
        let app = self.require_app(name).await?;
        self.start_known(&app).await
    }

    /// [`Self::start`] of an app already looked up.
    async fn start_known(self: &Arc<Self>, app: &AppRecord) -> Result<AppChanged, BusError> {
        let name = &app.app.name;
        self.stopped.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        let docker = self.docker().await?;
        let spec = self
            .load_stack(name)
            .ok_or_else(|| BusError::not_found(format!("'{name}' has no deployment")))?;
        stack::deploy(&docker, &spec).await.map_err(docker_error)?;
        self.refresh_status(name).await;
        let applied = format!("{} service(s) deployed", spec.services.len());
        let job = self.follow(
            app,
            Start::ACTION,
            Goal::Running {
                replaced: HashSet::new(),
            },
            applied,
        );
        Ok(AppChanged {
            app: name.clone(),
            started: Some(true),
            job: Some(job),
            ..AppChanged::default()
        })
    }

    pub async fn stop(self: &Arc<Self>, name: &str) -> Result<AppChanged, BusError> {
        let app = self.require_app(name).await?;
        self.stop_known(&app).await
    }

    /// [`Self::stop`] of an app already looked up. Its tasks go on serving until
    /// they exit (Swarm's stop grace period): its status says `stopping`, and the
    /// job ends once they are gone.
    async fn stop_known(self: &Arc<Self>, app: &AppRecord) -> Result<AppChanged, BusError> {
        let name = &app.app.name;
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone());
        let docker = self.docker().await?;
        let services = self.stack_services(&docker, name).await?;
        for service in &services {
            stack::stop(&docker, service).await.map_err(docker_error)?;
        }
        self.refresh_status(name).await;
        let applied = format!("{} service(s) told to stop", services.len());
        let job = self.follow(app, Stop::ACTION, Goal::Stopped, applied);
        Ok(AppChanged {
            app: name.clone(),
            stopped: Some(true),
            job: Some(job),
            ..AppChanged::default()
        })
    }

    pub async fn restart(self: &Arc<Self>, name: &str) -> Result<AppChanged, BusError> {
        let app = self.require_app(name).await?;
        let docker = self.docker().await?;
        let services = self.stack_services(&docker, name).await?;
        if services.is_empty() {
            return Err(BusError::conflict(format!("'{name}' is not deployed")));
        }
        // The tasks running now are the ones the restart replaces.
        let mut replaced = HashSet::new();
        for service in &services {
            let tasks = stack::task_summary(&docker, service).await.map_err(docker_error)?;
            replaced.extend(tasks.running_ids);
        }
        for service in &services {
            stack::force_update(&docker, service).await.map_err(docker_error)?;
        }
        let applied = format!("{} service(s) told to replace their tasks", services.len());
        let job = self.follow(&app, Restart::ACTION, Goal::Running { replaced }, applied);
        Ok(AppChanged {
            app: name.to_owned(),
            restarted: Some(true),
            job: Some(job),
            ..AppChanged::default()
        })
    }

    pub async fn set_enabled(self: &Arc<Self>, name: &str, enabled: bool) -> Result<AppChanged, BusError> {
        let app = self.require_app(name).await?;
        self.bus
            .call(&AppUpdate {
                name: name.to_owned(),
                enabled: Some(enabled),
                ..AppUpdate::default()
            })
            .await?;
        if enabled {
            self.start_known(&app).await
        } else {
            self.stop_known(&app).await
        }
    }

    /// Starts the job that follows `app` until Swarm has carried out `goal`, its
    /// progress on the app's progress topic; returns the job's id.
    fn follow(self: &Arc<Self>, app: &AppRecord, action: &str, goal: Goal, applied: String) -> String {
        let name = app.app.name.clone();
        // One job per app follows Swarm: a later command's job supersedes this
        // one, so a caller cannot pile up pollers of Docker.
        let topic = topics::app_progress(&name);
        let job: Job<LifecycleStep> = self.jobs.start_sole(&format!("{action}-{name}"), &name, topic);
        let id = job.id().to_owned();
        let ports: Vec<u16> = app
            .ports
            .iter()
            .filter(|p| p.protocol == Protocol::Tcp)
            .filter_map(|p| u16::try_from(p.port).ok())
            .collect();
        let this = Arc::clone(self);
        tokio::spawn(async move {
            job.running(LifecycleStep::Apply, applied).await;
            // On a one-node Swarm the tasks run here, so the app answers here
            // too; elsewhere only Swarm's word counts. Asked once per job.
            let here = match this.docker().await {
                Ok(docker) => other_nodes(&docker).await == 0,
                Err(_) => true,
            };
            let ports = if here { ports } else { Vec::new() };
            match this.converge(&job, &name, &goal, &ports).await {
                Ok(message) => job.done(message).await,
                Err(e) => job.failed(LifecycleStep::Converge, &e).await,
            }
        });
        id
    }

    /// Waits (up to `orchestrator.converge_timeout`) until `goal` holds, telling
    /// each change of the app's status on the way.
    async fn converge(
        &self,
        job: &Job<LifecycleStep>,
        name: &str,
        goal: &Goal,
        ports: &[u16],
    ) -> Result<String, BusError> {
        let timeout = self.config.orchestrator.converge_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut told = String::new();
        loop {
            if job.superseded() {
                return Err(BusError::conflict(format!("a later command for {name} took over")));
            }
            self.refresh_status(name).await;
            let status = self
                .statuses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .cloned();
            let seen = status
                .as_ref()
                .map_or_else(|| "no status".to_owned(), |s| format!("{} {}", s.health, s.replicas));
            if seen != told {
                job.running(LifecycleStep::Converge, format!("Swarm: {seen}")).await;
                told = seen.clone();
            }
            if let Some(status) = &status
                && self.reached(goal, name, status, ports).await?
            {
                return Ok(match goal {
                    Goal::Stopped => "stopped".to_owned(),
                    Goal::Running { .. } => format!("running {}", status.replicas),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                let why = status
                    .map(|s| s.error)
                    .filter(|e| !e.is_empty())
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(BusError::new(
                    ErrorCode::Timeout,
                    format!("{name} is {seen} after {timeout:?}{why}"),
                ));
            }
            tokio::time::sleep(CONVERGE_POLL).await;
        }
    }

    /// Whether `goal` holds for the app now.
    async fn reached(&self, goal: &Goal, name: &str, status: &AppStatus, ports: &[u16]) -> Result<bool, BusError> {
        match goal {
            Goal::Stopped => Ok(status.health == "stopped" && !answers_any(ports).await),
            Goal::Running { replaced } => {
                if status.health != "running" {
                    return Ok(false);
                }
                if !replaced.is_empty() {
                    let docker = self.docker().await?;
                    for service in self.stack_services(&docker, name).await? {
                        let tasks = stack::task_summary(&docker, &service).await.map_err(docker_error)?;
                        if tasks.stopping > 0 || tasks.running_ids.iter().any(|t| replaced.contains(t)) {
                            return Ok(false);
                        }
                    }
                }
                // `ports` is empty where the tasks may run on another node.
                Ok(ports.is_empty() || answers_any(ports).await)
            }
        }
    }

    pub async fn remove(&self, args: Remove) -> Result<Removed, BusError> {
        self.require_app(&args.name).await?;
        let docker = self.docker().await?;
        // The reconciler must not recreate what is being taken down: between the
        // services going and the row going, the app still looks enabled.
        if !self
            .installing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(args.name.clone())
        {
            return Err(BusError::conflict(format!(
                "'{}' is being installed or removed",
                args.name
            )));
        }
        let result = async {
            let keep: Option<&[String]> = if args.keep_data { None } else { Some(&[]) };
            let removal = stack::remove(&docker, &args.name, &self.instance, keep)
                .await
                .map_err(docker_error)?;
            self.bus
                .call(&AppDelete {
                    name: args.name.clone(),
                })
                .await?;
            Ok::<_, BusError>(removal)
        }
        .await;
        self.installing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&args.name);
        let removal = result?;
        if !removal.volumes_left.is_empty() {
            warn!(app = %args.name, volumes = ?removal.volumes_left, "volumes still in use were not removed");
        }
        self.remove_files(&args.name, args.keep_data);
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&args.name);
        self.statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&args.name);
        // A job still following the app ends at its next look.
        self.jobs.forget(&args.name);
        if let Err(e) = self.bus.clear_state(&topics::app_status(&args.name)).await {
            warn!(error = %e, "status clear not sent");
        }
        Ok(Removed {
            app: args.name,
            removed: true,
            data_kept: args.keep_data,
            volumes_left: removal.volumes_left,
        })
    }

    pub async fn logs(&self, args: Logs) -> Result<LogLines, BusError> {
        use futures_util::StreamExt;
        self.require_app(&args.name).await?;
        let tail = args.tail.unwrap_or(100);
        if !(1..=10_000).contains(&tail) {
            return Err(BusError::bad_request(format!(
                "tail: {tail} is not between 1 and 10000"
            )));
        }
        let since = args.since.unwrap_or(0);
        if since < 0 {
            return Err(BusError::bad_request("since: must be unix seconds"));
        }
        let docker = self.docker().await?;
        let mut lines = Vec::new();
        for service in self.stack_services(&docker, &args.name).await? {
            let options = bollard::query_parameters::LogsOptions {
                stdout: true,
                stderr: true,
                tail: tail.to_string(),
                since: i32::try_from(since).unwrap_or(i32::MAX),
                ..Default::default()
            };
            let mut stream = docker.service_logs(&service, Some(options));
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(out) => lines.extend(out.to_string().lines().map(|l| format!("{service}: {l}"))),
                    Err(e) => return Err(docker_error(e)),
                }
            }
        }
        Ok(LogLines { app: args.name, lines })
    }
}

/// Whether any of `ports` accepts a TCP connection on this node's loopback.
async fn answers_any(ports: &[u16]) -> bool {
    for port in ports {
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", *port));
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), connect).await {
            return true;
        }
    }
    false
}
