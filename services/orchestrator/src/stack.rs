//! What `docker stack deploy` / `docker stack rm` do, through the Engine API: the
//! objects of a [`StackSpec`] are created or updated, found again by the
//! `com.docker.stack.namespace` label, and removed only when they carry
//! `cubeos.managed=true`.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ConfigSpec, NetworkCreateRequest, Service, ServiceSpec, TaskState, VolumeCreateRequest};
use bollard::query_parameters::{
    ListConfigsOptions, ListNetworksOptions, ListServicesOptions, ListTasksOptions, UpdateServiceOptions,
};
use serde::{Deserialize, Serialize};

use cubeos_compose::Translation;
use cubeos_compose::swarm::{INSTANCE_LABEL, MANAGED_LABEL, NAMESPACE_LABEL, ownership_labels};

/// The Swarm objects of one app, as deployed; kept next to its compose file so the
/// reconciler can recreate what goes missing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StackSpec {
    pub name: String,
    /// The installation that owns it (`cubeos.instance`).
    pub instance: String,
    pub services: Vec<ServiceSpec>,
    pub networks: Vec<NetworkCreateRequest>,
    pub volumes: Vec<String>,
    pub configs: Vec<ConfigSpec>,
}

impl StackSpec {
    pub fn from_translation(name: &str, instance: &str, t: &Translation) -> Self {
        StackSpec {
            name: name.to_owned(),
            instance: instance.to_owned(),
            services: t.services.clone(),
            networks: t.networks.clone(),
            volumes: t.volumes.clone(),
            configs: t.configs.clone(),
        }
    }

    /// Desired replicas of a service (1 unless the spec says otherwise; global
    /// services count as 1).
    pub fn replicas(spec: &ServiceSpec) -> i64 {
        spec.mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .and_then(|r| r.replicas)
            .unwrap_or(1)
    }
}

/// Objects of this installation (and, with `stack`, of one stack).
fn owned_filter(instance: &str, stack: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut labels = vec![format!("{MANAGED_LABEL}=true"), format!("{INSTANCE_LABEL}={instance}")];
    if let Some(stack) = stack {
        labels.push(format!("{NAMESPACE_LABEL}={stack}"));
    }
    HashMap::from([("label".to_owned(), labels)])
}

/// Creates what is missing and updates what exists.
///
/// A network removed moments ago (the same app removed and installed again) can
/// still be found while Swarm deletes it, and then vanish before the service that
/// needs it is created: such a "network not found" is retried.
pub async fn deploy(docker: &Docker, stack: &StackSpec) -> Result<(), bollard::errors::Error> {
    let mut attempt = 0;
    loop {
        match deploy_once(docker, stack).await {
            Err(e) if attempt < 10 && e.to_string().contains("network") && e.to_string().contains("not found") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

async fn deploy_once(docker: &Docker, stack: &StackSpec) -> Result<(), bollard::errors::Error> {
    for network in &stack.networks {
        match docker.create_network(network.clone()).await {
            Ok(_) => {}
            // Already there (409): keep it.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    for volume in &stack.volumes {
        let labels = ownership_labels(&stack.name, &stack.instance);
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.clone()),
                labels: Some(labels),
                ..Default::default()
            })
            .await?;
    }
    let mut config_ids = HashMap::new();
    for config in &stack.configs {
        let name = config.name.clone().unwrap_or_default();
        let existing = docker
            .list_configs(Some(ListConfigsOptions {
                filters: Some(HashMap::from([("name".to_owned(), vec![name.clone()])])),
            }))
            .await?;
        let id = match existing
            .into_iter()
            .find(|c| c.spec.as_ref().and_then(|s| s.name.as_ref()) == Some(&name))
        {
            Some(c) => c.id.unwrap_or_default(),
            None => docker.create_config(config.clone()).await?.id,
        };
        config_ids.insert(name, id);
    }
    for spec in &stack.services {
        let mut spec = spec.clone();
        for reference in spec
            .task_template
            .as_mut()
            .and_then(|t| t.container_spec.as_mut())
            .and_then(|c| c.configs.as_mut())
            .into_iter()
            .flatten()
        {
            reference.config_id = reference.config_name.as_ref().and_then(|n| config_ids.get(n).cloned());
        }
        let name = spec.name.clone().unwrap_or_default();
        match docker
            .inspect_service(&name, None::<bollard::query_parameters::InspectServiceOptions>)
            .await
        {
            Ok(existing) => {
                let version = existing.version.and_then(|v| v.index).unwrap_or(0);
                let options = UpdateServiceOptions {
                    version: version as i32,
                    ..Default::default()
                };
                docker.update_service(&name, spec, options, None).await?;
            }
            Err(_) => {
                docker.create_service(spec, None).await?;
            }
        }
    }
    Ok(())
}

/// Services this installation owns, with their running / desired task counts.
pub async fn managed_services(docker: &Docker, instance: &str) -> Result<Vec<Service>, bollard::errors::Error> {
    docker
        .list_services(Some(ListServicesOptions {
            filters: Some(owned_filter(instance, None)),
            status: Some(true),
        }))
        .await
}

/// The stack a managed service belongs to.
pub fn stack_of(service: &Service) -> Option<&str> {
    service
        .spec
        .as_ref()?
        .labels
        .as_ref()?
        .get(NAMESPACE_LABEL)
        .map(String::as_str)
}

pub fn service_name(service: &Service) -> &str {
    service
        .spec
        .as_ref()
        .and_then(|s| s.name.as_deref())
        .unwrap_or_default()
}

/// What a removal could not remove.
#[derive(Debug, Default)]
pub struct Removal {
    /// Volumes still in use when the removal gave up on them.
    pub volumes_left: Vec<String>,
}

/// How long a removal waits for the stack's (killed) containers to be gone: they
/// hold its volumes.
const TASKS_GONE: Duration = Duration::from_secs(20);

/// Removes a stack's services, networks and configs, and its volumes except
/// those in `keep_volumes` (`None` keeps them all).
///
/// Volumes stay busy until the services' containers are gone. When volumes go, the
/// data goes with them, so the containers get no grace period to flush it: they
/// are killed, waited for (bounded), and what is still busy is retried; a volume
/// that still cannot go is reported, not ignored. When data is kept, containers
/// stop in their own time.
pub async fn remove(
    docker: &Docker,
    stack: &str,
    instance: &str,
    keep_volumes: Option<&[String]>,
) -> Result<Removal, bollard::errors::Error> {
    let mut removed = Vec::new();
    for service in managed_services(docker, instance).await? {
        if stack_of(&service) == Some(stack) {
            let name = service_name(&service).to_owned();
            // A reconcile pass may have removed it a moment ago.
            already_gone_is_fine(docker.delete_service(&name).await)?;
            removed.push(name);
        }
    }
    if keep_volumes.is_some() {
        kill_containers(docker, &removed).await;
        wait_containers_gone(docker, &removed, TASKS_GONE).await;
    }
    let filter = Some(owned_filter(instance, Some(stack)));
    // Networks are busy until the service's tasks are gone. Removed by id: Swarm
    // allows two networks one name (another installation's, or one left behind),
    // and then a name is ambiguous.
    for attempt in 0..30 {
        let networks = docker
            .list_networks(Some(ListNetworksOptions {
                filters: filter.clone(),
            }))
            .await?;
        let managed = networks;
        if managed.is_empty() {
            break;
        }
        let mut busy = false;
        for n in managed {
            if docker
                .remove_network(n.id.as_deref().unwrap_or_default())
                .await
                .is_err()
            {
                busy = true;
            }
        }
        if !busy || attempt == 29 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for config in docker
        .list_configs(Some(ListConfigsOptions {
            filters: filter.clone(),
        }))
        .await?
    {
        let _ = docker.delete_config(config.id.as_deref().unwrap_or_default()).await;
    }
    let mut removal = Removal::default();
    let Some(keep) = keep_volumes else {
        return Ok(removal);
    };
    let list = docker
        .list_volumes(Some(bollard::query_parameters::ListVolumesOptions { filters: filter }))
        .await?;
    for v in list.volumes.into_iter().flatten().filter(|v| !keep.contains(&v.name)) {
        if !remove_volume(docker, &v.name).await {
            removal.volumes_left.push(v.name);
        }
    }
    Ok(removal)
}

/// Removes a volume, retrying while a container that is going away still holds it.
async fn remove_volume(docker: &Docker, name: &str) -> bool {
    for attempt in 0..20 {
        match docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            Ok(()) => return true,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return true,
            Err(_) if attempt < 19 => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(_) => {}
        }
    }
    false
}

/// The ids of the containers (running or not) of `services`, on this node.
async fn containers_of(docker: &Docker, services: &[String], running_only: bool) -> Vec<String> {
    let mut ids = Vec::new();
    // One query per service: Docker ANDs the values of one filter key.
    for service in services {
        let options = bollard::query_parameters::ListContainersOptions {
            all: !running_only,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("com.docker.swarm.service.name={service}")],
            )])),
            ..Default::default()
        };
        let found = docker.list_containers(Some(options)).await.unwrap_or_default();
        ids.extend(found.into_iter().filter_map(|c| c.id));
    }
    ids
}

/// Kills what still runs of deleted services, whose data is going anyway.
async fn kill_containers(docker: &Docker, services: &[String]) {
    for id in containers_of(docker, services, true).await {
        // Gone already, or stopping on its own: either way it is going.
        let _ = docker
            .kill_container(&id, None::<bollard::query_parameters::KillContainerOptions>)
            .await;
    }
}

/// Waits until no container of `services` is left (Swarm removes a deleted
/// service's containers once they have stopped).
async fn wait_containers_gone(docker: &Docker, services: &[String], timeout: Duration) {
    if services.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline && !containers_of(docker, services, false).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The stack's volumes that exist right now.
pub async fn existing_volumes(docker: &Docker, stack: &StackSpec) -> Result<Vec<String>, bollard::errors::Error> {
    let mut there = Vec::new();
    for volume in &stack.volumes {
        match docker.inspect_volume(volume).await {
            Ok(_) => there.push(volume.clone()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(there)
}

/// Reads a service's spec, changes it with `edit`, and writes it back at the
/// version read (Swarm refuses the update if someone changed it in between).
async fn edit_service(
    docker: &Docker,
    name: &str,
    edit: impl FnOnce(&mut ServiceSpec),
) -> Result<(), bollard::errors::Error> {
    let existing = docker
        .inspect_service(name, None::<bollard::query_parameters::InspectServiceOptions>)
        .await?;
    update_service(docker, name, existing, edit).await
}

/// Writes `edit` of an inspected service back, at the version it was read at.
async fn update_service(
    docker: &Docker,
    name: &str,
    existing: Service,
    edit: impl FnOnce(&mut ServiceSpec),
) -> Result<(), bollard::errors::Error> {
    let mut spec = existing.spec.unwrap_or_default();
    edit(&mut spec);
    let version = existing.version.and_then(|v| v.index).unwrap_or(0);
    let options = UpdateServiceOptions {
        version: version as i32,
        ..Default::default()
    };
    docker.update_service(name, spec, options, None).await?;
    Ok(())
}

/// Removes this installation's networks whose stack is not in `keep` (left behind
/// when a removal gave up waiting for tasks to stop).
pub async fn remove_orphan_networks(
    docker: &Docker,
    instance: &str,
    keep: &std::collections::HashSet<String>,
) -> Result<(), bollard::errors::Error> {
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(owned_filter(instance, None)),
        }))
        .await?;
    for n in networks {
        let stack = n
            .labels
            .as_ref()
            .and_then(|l| l.get(NAMESPACE_LABEL))
            .cloned()
            .unwrap_or_default();
        if !keep.contains(&stack) {
            // Still in use: the next pass tries again.
            let _ = docker.remove_network(n.id.as_deref().unwrap_or_default()).await;
        }
    }
    Ok(())
}

/// Sets a service's replica count (0 stops it).
pub async fn scale(docker: &Docker, name: &str, replicas: i64) -> Result<(), bollard::errors::Error> {
    edit_service(docker, name, |spec| set_replicas(spec, replicas)).await
}

fn set_replicas(spec: &mut ServiceSpec, replicas: i64) {
    spec.mode
        .get_or_insert_with(Default::default)
        .replicated
        .get_or_insert_with(Default::default)
        .replicas = Some(replicas);
}

/// A deletion's result, where "not found" (someone removed it first) is success.
fn already_gone_is_fine(result: Result<(), bollard::errors::Error>) -> Result<(), bollard::errors::Error> {
    match result {
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
        other => other,
    }
}

/// Stops a service's tasks: scaled to zero, or removed when it is global (one task
/// per node, no replica count); starting the app deploys it again.
pub async fn stop(docker: &Docker, name: &str) -> Result<(), bollard::errors::Error> {
    let existing = docker
        .inspect_service(name, None::<bollard::query_parameters::InspectServiceOptions>)
        .await?;
    let global = existing
        .spec
        .as_ref()
        .and_then(|s| s.mode.as_ref())
        .is_some_and(|m| m.global.is_some());
    if global {
        // The app is marked stopped first, so a reconcile pass may remove the
        // service before this does: gone is what stopping wants.
        already_gone_is_fine(docker.delete_service(name).await)
    } else {
        update_service(docker, name, existing, |spec| set_replicas(spec, 0)).await
    }
}

/// Restarts a service's tasks (`docker service update --force`).
pub async fn force_update(docker: &Docker, name: &str) -> Result<(), bollard::errors::Error> {
    edit_service(docker, name, |spec| {
        let task = spec.task_template.get_or_insert_with(Default::default);
        task.force_update = Some(task.force_update.unwrap_or(0).wrapping_add(1));
    })
    .await
}

/// A service's tasks right now.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TaskSummary {
    /// Running, and meant to.
    pub running: i64,
    /// The ids of those tasks.
    pub running_ids: Vec<String>,
    /// Still running, but told to shut down (stopped or scaled down): they serve
    /// until they exit.
    pub stopping: i64,
    /// The latest error a task reported.
    pub error: Option<String>,
}

/// A service's tasks right now: what runs, what is still shutting down, and the
/// latest error, if any.
pub async fn task_summary(docker: &Docker, service: &str) -> Result<TaskSummary, bollard::errors::Error> {
    let filters = HashMap::from([("service".to_owned(), vec![service.to_owned()])]);
    let tasks = docker
        .list_tasks(Some(ListTasksOptions { filters: Some(filters) }))
        .await?;
    let mut summary = TaskSummary::default();
    let mut newest = None;
    for task in &tasks {
        let status = task.status.as_ref();
        if status.and_then(|s| s.state) == Some(TaskState::RUNNING) {
            if task.desired_state == Some(TaskState::RUNNING) {
                summary.running += 1;
                summary.running_ids.extend(task.id.clone());
            } else {
                summary.stopping += 1;
            }
        }
        let when = task.updated_at.clone().unwrap_or_default();
        if let Some(err) = status.and_then(|s| s.err.clone()).filter(|e| !e.is_empty())
            && newest.as_ref().is_none_or(|n: &String| when > *n)
        {
            newest = Some(when);
            summary.error = Some(err);
        }
    }
    Ok(summary)
}

/// Waits until every service of `stack` runs its desired replicas; on timeout the
/// error says which service and the task error Docker reported.
pub async fn wait_converged(docker: &Docker, stack: &StackSpec, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut pending = None;
        for spec in &stack.services {
            let name = spec.name.clone().unwrap_or_default();
            let want = StackSpec::replicas(spec);
            let tasks = task_summary(docker, &name).await.map_err(|e| format!("Docker: {e}"))?;
            if tasks.running < want {
                pending = Some((name, tasks.running, want, tasks.error));
                break;
            }
        }
        let Some((name, running, want, error)) = pending else {
            return Ok(());
        };
        if tokio::time::Instant::now() >= deadline {
            let why = error.map(|e| format!(": {e}")).unwrap_or_default();
            return Err(format!("{name} runs {running}/{want} after {timeout:?}{why}"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
