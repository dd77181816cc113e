//! The running reconciler: one pass compares the registry with Swarm and acts
//! ([`crate::reconcile`] decides what to do); the loop runs a pass at start, every
//! interval and on Docker service events.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cubeos_contract::api::registry::AppList;
use cubeos_contract::topics;
use tracing::{info, warn};

use crate::reconcile::{self, Action, Actual, Desired};
use crate::service::Orchestrator;
use crate::stack::{self, StackSpec};
use crate::status::{compute_status, unknown};

impl Orchestrator {
    /// One pass: registry vs Swarm; create, scale, remove; publish statuses.
    pub async fn reconcile(&self) {
        let apps = match self.bus.call(&AppList::default()).await {
            Ok(apps) => apps,
            Err(e) => {
                warn!(error = %e, "reconcile: registry unavailable");
                return;
            }
        };
        let names: Vec<(String, bool)> = apps.into_iter().map(|a| (a.app.name, a.app.enabled)).collect();
        let docker = match self.docker().await {
            Ok(d) => d,
            Err(e) => {
                for (name, _) in &names {
                    self.publish_status(name, unknown(e.message.clone())).await;
                }
                return;
            }
        };
        let services = match stack::managed_services(&docker, &self.instance).await {
            Ok(s) => s,
            Err(e) => {
                self.forget_docker().await;
                for (name, _) in &names {
                    self.publish_status(name, unknown(format!("Docker: {e}"))).await;
                }
                return;
            }
        };
        let stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let busy = self.installing.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let desired: Vec<Desired> = names
            .iter()
            .map(|(name, enabled)| Desired {
                app: name.clone(),
                run: *enabled && !stopped.contains(name),
                stack: self.load_stack(name),
            })
            .collect();
        let actual: Vec<Actual> = services
            .iter()
            .filter_map(|s| {
                let mode = s.spec.as_ref()?.mode.as_ref()?;
                Some(Actual {
                    service: stack::service_name(s).to_owned(),
                    stack: stack::stack_of(s)?.to_owned(),
                    replicas: mode.replicated.as_ref().map(|r| r.replicas.unwrap_or(0)),
                })
            })
            .collect();
        for action in reconcile::diff(&desired, &actual, &busy) {
            let outcome = match &action {
                Action::Create { app, spec } => {
                    let one = StackSpec {
                        services: vec![(**spec).clone()],
                        ..self.load_stack(app).unwrap_or_default()
                    };
                    stack::deploy(&docker, &one).await
                }
                Action::Scale { service, replicas } => stack::scale(&docker, service, *replicas).await,
                Action::Remove { service, .. } => docker.delete_service(service).await,
            };
            match outcome {
                Ok(()) => info!(?action, "reconciled"),
                Err(e) => warn!(?action, error = %e, "reconcile action failed"),
            }
        }
        let services = stack::managed_services(&docker, &self.instance)
            .await
            .unwrap_or(services);
        for (name, _) in &names {
            let status = compute_status(&docker, name, &services, stopped.contains(name)).await;
            self.publish_status(name, status).await;
        }
        let mut keep: HashSet<String> = names.iter().map(|(n, _)| n.clone()).collect();
        keep.extend(busy);
        tracing::debug!(apps = names.len(), "reconcile pass done; removing orphan networks");
        if let Err(e) = stack::remove_orphan_networks(&docker, &self.instance, &keep).await {
            warn!(error = %e, "orphan networks not listed");
        }
        // Statuses of apps that are gone.
        let known: HashSet<&String> = names.iter().map(|(n, _)| n).collect();
        let gone: Vec<String> = self
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|n| !known.contains(n))
            .cloned()
            .collect();
        for name in gone {
            self.statuses.lock().unwrap_or_else(|p| p.into_inner()).remove(&name);
            let _ = self.bus.clear_state(&topics::app_status(&name)).await;
        }
    }
}

/// Keeps the reconciler going: at start, every interval, and on Docker service
/// events; reconnects to Docker with backoff when it goes away.
pub async fn reconcile_loop(orch: Arc<Orchestrator>, mut shutdown: cubeos_kit::service::Shutdown) {
    use futures_util::StreamExt;
    let interval = orch.config.orchestrator.reconcile_interval;
    let mut backoff = Duration::from_secs(1);
    loop {
        orch.reconcile().await;
        let mut events = match orch.docker().await {
            Ok(docker) => {
                backoff = Duration::from_secs(1);
                let filters = std::collections::HashMap::from([("type".to_owned(), vec!["service".to_owned()])]);
                let options = bollard::query_parameters::EventsOptions {
                    filters: Some(filters),
                    ..Default::default()
                };
                Some(docker.events(Some(options)).boxed())
            }
            Err(_) => {
                backoff = (backoff * 2).min(interval);
                None
            }
        };
        let wait = if events.is_some() { interval } else { backoff };
        let deadline = tokio::time::Instant::now() + wait;
        // Whichever comes first: the next pass, a Docker event, or shutdown.
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep_until(deadline) => {}
            event = async { match events.as_mut() { Some(e) => e.next().await, None => std::future::pending().await } } => {
                match event {
                    // Let a burst of events settle, then look again.
                    Some(Ok(_)) => tokio::time::sleep(Duration::from_millis(500)).await,
                    _ => orch.forget_docker().await,
                }
            }
        }
    }
}
