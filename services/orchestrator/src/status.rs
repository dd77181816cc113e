//! Every app's runtime status, from its Swarm services and their tasks:
//! `status` and the retained `cubeos/state/apps/<name>/status`.

use bollard::Docker;
use cubeos_contract::api::orchestrator::*;
use cubeos_contract::api::registry::AppList;
use cubeos_contract::topics;
use cubeos_kit::BusError;
use tracing::warn;

use crate::service::Orchestrator;
use crate::stack::{self, StackSpec};

impl Orchestrator {
    pub async fn status(&self, name: Option<String>) -> Result<Statuses, BusError> {
        match name {
            Some(name) => {
                self.require_app(&name).await?;
                self.refresh_status(&name).await;
                let status = self
                    .statuses
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&name)
                    .cloned();
                Ok(Statuses::One { app: name, status })
            }
            None => {
                // Until the first reconcile pass has seen every app, the ones not
                // seen yet are looked at now: no app goes without a status.
                let apps = self.bus.call(&AppList::default()).await?;
                let unseen: Vec<String> = {
                    let known = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
                    apps.into_iter()
                        .map(|a| a.app.name)
                        .filter(|n| !known.contains_key(n))
                        .collect()
                };
                for name in unseen {
                    self.refresh_status(&name).await;
                }
                let all = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
                Ok(Statuses::All(all.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
            }
        }
    }

    /// Recomputes one app's status from Swarm and publishes it if it changed.
    pub(crate) async fn refresh_status(&self, name: &str) {
        let status = match self.docker().await {
            Ok(docker) => match stack::managed_services(&docker, &self.instance).await {
                Ok(services) => compute_status(&docker, name, &services, self.is_stopped(name)).await,
                Err(e) => unknown(format!("Docker: {e}")),
            },
            Err(e) => unknown(e.message),
        };
        self.publish_status(name, status).await;
    }

    pub(crate) async fn publish_status(&self, name: &str, status: AppStatus) {
        let changed = self
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), status.clone())
            != Some(status.clone());
        if changed && let Err(e) = self.bus.publish_state(&topics::app_status(name), &status).await {
            warn!(error = %e, "status not sent");
        }
    }
}

pub(crate) fn unknown(error: String) -> AppStatus {
    AppStatus {
        running: false,
        health: "unknown".into(),
        replicas: "?".into(),
        last_started: String::new(),
        error,
    }
}

/// An app's status from its services and their tasks. `stopped`: a person
/// stopped it (a stopped global service has no Swarm service at all).
pub(crate) async fn compute_status(
    docker: &Docker,
    name: &str,
    services: &[bollard::models::Service],
    stopped: bool,
) -> AppStatus {
    let mine: Vec<&bollard::models::Service> = services.iter().filter(|s| stack::stack_of(s) == Some(name)).collect();
    if mine.is_empty() {
        return AppStatus {
            running: false,
            health: if stopped { "stopped" } else { "not_deployed" }.into(),
            replicas: "0/0".into(),
            last_started: String::new(),
            error: String::new(),
        };
    }
    let (mut running, mut stopping, mut desired, mut error, mut last) =
        (0i64, 0i64, 0i64, String::new(), String::new());
    for s in &mine {
        let want = s.spec.as_ref().map_or(1, StackSpec::replicas);
        desired += want;
        // The service list already counts running tasks; the tasks themselves are
        // asked for only when some are missing (for Docker's error) or none are
        // wanted (for tasks still shutting down).
        let counted = s
            .service_status
            .as_ref()
            .and_then(|st| st.running_tasks)
            .map(|r| r as i64);
        let r = match counted {
            Some(r) if r >= want && want > 0 => r,
            _ => match stack::task_summary(docker, stack::service_name(s)).await {
                Ok(tasks) => {
                    if tasks.running < want {
                        error = tasks.error.unwrap_or_default();
                    }
                    stopping += tasks.stopping;
                    tasks.running
                }
                Err(_) => counted.unwrap_or(0),
            },
        };
        running += r.min(want);
        let updated = s.updated_at.clone().unwrap_or_default();
        if updated > last {
            last = updated;
        }
    }
    let health = match (running, desired) {
        (_, 0) if stopping > 0 => "stopping",
        (_, 0) => "stopped",
        (r, d) if r >= d => "running",
        _ if !error.is_empty() => "failing",
        _ => "starting",
    };
    AppStatus {
        // A task shutting down still serves: the app runs until it is gone.
        running: (running > 0 && running >= desired) || stopping > 0,
        health: health.into(),
        replicas: format!("{}/{desired}", running + stopping),
        last_started: last,
        error,
    }
}
