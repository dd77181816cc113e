//! The orchestrator service: install, lifecycle commands, the reconciler and the
//! runtime status of every app.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use cubeos_contract::api::orchestrator::*;
use cubeos_contract::api::port_allocator::{Allocate, Allocated};
use cubeos_contract::api::registry::{
    AppDelete, AppGet, AppList, AppUpdate, FqdnAdd, FqdnSpec, PortReserve, PortSpec, StateSet,
};
use cubeos_contract::models::AppRecord;
use cubeos_contract::topics;
use cubeos_contract::validate;
use cubeos_kit::docker::DockerLink;
use cubeos_kit::{Bus, BusError, Config, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};

use crate::compose::{self, Context, PortKey, Translation};
use crate::images;
use crate::reconcile::{self, Action, Actual, Desired};
use crate::stack::{self, StackSpec};

/// The steps of an install, in order (DESIGN: each is undone on failure).
pub const INSTALL_STEPS: &[&str] = &[
    "validate",
    "register",
    "allocate ports",
    "create directories",
    "write compose",
    "add name",
    "deploy",
    "converge",
];

/// How long an unreachable Docker is believed down before commands try again.
const DOCKER_RETRY: Duration = Duration::from_secs(1);

/// Marks an install in progress: a restart finding it rolls the install back.
const INSTALLING_MARKER: &str = ".installing";

/// How long a stopped app's status is followed while its tasks shut down.
const STOP_FOLLOW: Duration = Duration::from_secs(60);

/// Jobs whose last progress `job.get` still answers.
const JOBS_KEPT: usize = 64;

/// What an install created, kept in its marker file: a rollback, now or after a
/// crash, removes exactly this and never what was there before.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Marker {
    job: String,
    /// Directories the install created (the topmost new one of each path), in order.
    created: Vec<PathBuf>,
    /// The app's volumes that existed before it deployed (`None`: not deployed yet).
    volumes_before: Option<Vec<String>>,
}

impl Marker {
    /// Reads an app's marker; one from before markers held a ledger is the job
    /// name alone, and then the whole app directory was the install's.
    fn read(path: &Path) -> Option<Marker> {
        let bytes = std::fs::read(path).ok()?;
        Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| Marker {
            job: String::from_utf8_lossy(&bytes).into_owned(),
            created: path.parent().map(Path::to_path_buf).into_iter().collect(),
            volumes_before: None,
        }))
    }

    fn write(&self, path: &Path) -> Result<(), BusError> {
        let bytes = serde_json::to_vec(self).map_err(|e| BusError::internal(e.to_string()))?;
        std::fs::write(path, bytes).map_err(|e| io_error("install marker", e))
    }
}

/// Creates `dir` and its missing parents, recording the topmost one created
/// below the shared `roots` (the data root, `apps/`, the shared folder), which are
/// never an install's own even when it was the first to need them.
fn create_recorded(dir: &Path, roots: &[PathBuf], created: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut topmost = None;
    let mut at = Some(dir);
    while let Some(p) = at.filter(|p| !p.exists() && !roots.iter().any(|r| r == p)) {
        topmost = Some(p.to_path_buf());
        at = p.parent();
    }
    std::fs::create_dir_all(dir)?;
    if let Some(top) = topmost
        && !created.iter().any(|c| top.starts_with(c))
    {
        created.push(top);
    }
    Ok(())
}

pub struct Orchestrator {
    pub bus: Bus,
    pub config: Arc<Config>,
    /// This installation's id: only Swarm objects labelled with it are touched.
    instance: String,
    docker: DockerLink,
    /// Apps a person stopped: the reconciler leaves them at 0 until started (or
    /// until the next boot: `enabled` means "runs after boot").
    stopped: std::sync::Mutex<HashSet<String>>,
    /// Apps being installed or removed: the reconciler leaves them alone.
    installing: std::sync::Mutex<HashSet<String>>,
    statuses: std::sync::Mutex<BTreeMap<String, AppStatus>>,
    next_job: std::sync::atomic::AtomicU64,
    /// The last progress of recent jobs, newest last, for `job.get`.
    jobs: std::sync::Mutex<std::collections::VecDeque<Progress>>,
}

/// A compose file on this box: a regular file, read no further than one byte past
/// the translator's limit (so `/dev/zero` or a huge file cannot exhaust memory).
fn read_compose_file(path: &Path) -> Result<String, BusError> {
    use std::io::Read;
    let bad = |e: std::io::Error| BusError::bad_request(format!("path: {e}"));
    let file = std::fs::File::open(path).map_err(bad)?;
    if !file.metadata().map_err(bad)?.is_file() {
        return Err(BusError::bad_request("path: not a regular file"));
    }
    let mut text = String::new();
    file.take(compose::yaml::MAX_FILE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(bad)?;
    if text.len() > compose::yaml::MAX_FILE_BYTES {
        return Err(BusError::bad_request("path: the compose file is too large"));
    }
    Ok(text)
}

fn docker_error(e: bollard::errors::Error) -> BusError {
    BusError::unavailable(format!("Docker: {e}"))
}

fn io_error(what: &str, e: std::io::Error) -> BusError {
    BusError::internal(format!("{what}: {e}"))
}

impl Orchestrator {
    pub fn new(bus: Bus, config: Arc<Config>) -> std::io::Result<Self> {
        Ok(Orchestrator {
            bus,
            instance: config.instance_id()?,
            docker: DockerLink::new(config.docker.clone(), DOCKER_RETRY),
            config,
            stopped: Default::default(),
            installing: Default::default(),
            statuses: Default::default(),
            next_job: std::sync::atomic::AtomicU64::new(1),
            jobs: Default::default(),
        })
    }

    /// The Docker client, connecting (and negotiating the API version) on demand.
    pub async fn docker(&self) -> Result<Docker, BusError> {
        self.docker.get().await
    }

    async fn forget_docker(&self) {
        self.docker.forget().await;
    }

    /// This installation's id, as its Swarm objects are labelled.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn app_dir(&self, name: &str) -> PathBuf {
        self.config.app_dir(name)
    }

    /// Where an app's deployed specs are kept: next to its compose file, under
    /// `apps/` or, for core apps, `coreapps/`.
    fn stack_file(&self, name: &str) -> PathBuf {
        let core = crate::core::core_dir(&self.config, name)
            .join("appconfig")
            .join("stack.json");
        if core.exists() {
            core
        } else {
            self.app_dir(name).join("appconfig").join("stack.json")
        }
    }

    /// Deploys the core apps (when configured), without waiting for them.
    pub async fn deploy_core_apps(&self) {
        let docker = match self.docker().await {
            Ok(d) => d,
            Err(e) => return warn!(error = %e.message, "core apps not deployed"),
        };
        for app in crate::core::CORE_APPS {
            let result = async {
                let t = crate::core::translate(&self.config, &self.instance, app).map_err(|e| e.to_string())?;
                for dir in &t.bind_dirs {
                    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                }
                let spec = StackSpec::from_translation(app.name, &self.instance, &t);
                let path = crate::core::core_dir(&self.config, app.name)
                    .join("appconfig")
                    .join("stack.json");
                std::fs::write(&path, serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                stack::deploy(&docker, &spec).await.map_err(|e| e.to_string())
            }
            .await;
            if let Err(e) = result {
                warn!(app = app.name, error = %e, "core app not deployed");
            }
        }
    }

    fn load_stack(&self, name: &str) -> Option<StackSpec> {
        std::fs::read(self.stack_file(name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Makes sure this node is a Swarm manager; records `swarm_initialized`.
    pub async fn ensure_swarm(&self) -> Result<(), BusError> {
        let docker = self.docker().await?;
        if docker.inspect_swarm().await.is_err() {
            if !self.config.orchestrator.swarm_init {
                return Err(BusError::unavailable(
                    "this node is not a Swarm manager and orchestrator.swarm_init is off",
                ));
            }
            let request = bollard::models::SwarmInitRequest {
                listen_addr: Some("0.0.0.0:2377".into()),
                advertise_addr: Some(self.config.orchestrator.advertise_addr.clone()),
                ..Default::default()
            };
            docker.init_swarm(request).await.map_err(docker_error)?;
            info!("initialised a Swarm on this node");
        }
        self.bus
            .call(&StateSet {
                key: "swarm_initialized".into(),
                value: "true".into(),
            })
            .await?;
        Ok(())
    }

    async fn progress(&self, job: &str, app: &str, step: usize, status: &str, message: impl Into<String>) {
        self.progress_event(job, app, step, status, message.into(), None).await
    }

    async fn progress_event(
        &self,
        job: &str,
        app: &str,
        step: usize,
        status: &str,
        message: String,
        code: Option<ErrorCode>,
    ) {
        let event = Progress {
            job: job.to_owned(),
            step,
            of: INSTALL_STEPS.len(),
            name: INSTALL_STEPS
                .get(step.saturating_sub(1))
                .copied()
                .unwrap_or("done")
                .to_owned(),
            status: status.to_owned(),
            message,
            code,
        };
        self.publish_progress(&topics::app_progress(app), event).await;
    }

    /// Publishes a job's progress and keeps it as the job's last, for `job.get`.
    async fn publish_progress(&self, topic: &str, event: Progress) {
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.retain(|j| j.job != event.job);
            if jobs.len() >= JOBS_KEPT {
                jobs.pop_front();
            }
            jobs.push_back(event.clone());
        }
        if let Err(e) = self.bus.publish_event(topic, &event).await {
            warn!(error = %e, "progress event not sent");
        }
    }

    /// `job.get`: a recent job's last progress. A job from before a restart is
    /// `not_found`: the restart rolled back what it had not finished.
    pub fn job(&self, job: &str) -> Result<Progress, BusError> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let found = jobs.iter().find(|j| j.job == job).ok_or_else(|| {
            BusError::not_found(format!(
                "no job '{}' (ended before a restart?)",
                validate::truncate(job, 64)
            ))
        })?;
        Ok(found.clone())
    }

    /// Validates an install and starts it; replies at once with the job id.
    pub async fn install(self: &Arc<Self>, args: Install) -> Result<JobStarted, BusError> {
        let text = match (&args.compose, &args.path) {
            (Some(text), None) => text.clone(),
            (None, Some(path)) => {
                let p = Path::new(path);
                if !p.is_absolute() {
                    return Err(BusError::bad_request("path: must be absolute"));
                }
                read_compose_file(p)?
            }
            _ => return Err(BusError::bad_request("give exactly one of 'compose' and 'path'")),
        };
        let name = match (args.name.clone(), &args.path) {
            (Some(name), _) => name,
            (None, Some(path)) => compose::default_name(&text, Path::new(path)),
            (None, None) => compose::declared_name(&text)
                .ok_or_else(|| BusError::bad_request("name: the file has no 'name:', give one"))?,
        };
        validate::name("name", &name)?;
        for key in args.env.keys() {
            validate::key("env", &key.to_ascii_lowercase())?;
        }
        let mut ctx = Context::for_app(&self.config, &self.instance, &name, &args.env);
        ctx.force = args.force;
        let translation = compose::translate(&text, &ctx).map_err(|e| BusError::bad_request(e.to_string()))?;
        translation
            .check(args.force)
            .map_err(|e| BusError::bad_request(e.to_string()))?;
        match self.bus.call(&AppGet { name: name.clone() }).await {
            Ok(_) => {
                return Err(BusError::conflict(format!(
                    "an app named '{name}' is already installed"
                )));
            }
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
        let docker = self.docker().await?;
        self.require_images(&docker, &translation).await?;
        if !self
            .installing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone())
        {
            return Err(BusError::conflict(format!("'{name}' is being installed")));
        }
        let job = format!(
            "install-{name}-{}",
            self.next_job.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let this = Arc::clone(self);
        let (job_id, app) = (job.clone(), name.clone());
        tokio::spawn(async move {
            this.progress(&job_id, &app, 1, "running", "compose file validated")
                .await;
            let result = this
                .run_install(&job_id, &app, &text, ctx, translation, args.keep_data)
                .await;
            this.installing.lock().unwrap_or_else(|p| p.into_inner()).remove(&app);
            match result {
                Ok(()) => {
                    this.progress(&job_id, &app, INSTALL_STEPS.len(), "done", "installed and running")
                        .await
                }
                Err((step, e)) => {
                    warn!(app, step, error = %e.message, "install failed; rolled back");
                    let what = INSTALL_STEPS.get(step.wrapping_sub(1)).copied().unwrap_or("install");
                    let message = format!("{what} failed: {}", e.message);
                    this.progress_event(&job_id, &app, step, "failed", message, Some(e.code))
                        .await;
                }
            }
            this.reconcile().await;
        });
        Ok(JobStarted {
            job,
            app: name,
            steps: INSTALL_STEPS.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// Steps 2.. of an install; on failure everything done is undone and the
    /// failing step returned.
    async fn run_install(
        &self,
        job: &str,
        name: &str,
        text: &str,
        mut ctx: Context,
        first: Translation,
        keep_data: bool,
    ) -> Result<(), (usize, BusError)> {
        let app_dir = self.app_dir(name);
        let marker_path = app_dir.join(INSTALLING_MARKER);
        let mut marker = Marker {
            job: job.to_owned(),
            ..Marker::default()
        };
        let step = |n: usize| move |e: BusError| (n, e);
        let result = async {
            // 2. register (the marker first: a crash after this point is undone at restart)
            let roots = self.shared_roots();
            create_recorded(&app_dir, &roots, &mut marker.created).map_err(|e| (2, io_error("app directory", e)))?;
            marker.write(&marker_path).map_err(step(2))?;
            let compose_path = app_dir.join("appconfig").join("docker-compose.yml");
            let record = first
                .app
                .to_new_app(compose_path.display().to_string(), ctx.app_data.display().to_string());
            self.bus.call(&record).await.map_err(step(2))?;
            self.progress(job, name, 2, "running", "app registered").await;

            // 3. allocate ports: the allocator's choices replace the file's
            let mut seen = HashSet::new();
            let mut placed = Vec::new();
            for p in first
                .ports
                .iter()
                .filter(|p| seen.insert((p.service.clone(), p.target, p.protocol)))
            {
                let key = PortKey {
                    service: p.service.clone(),
                    target: p.target,
                    protocol: p.protocol,
                };
                if p.host_network {
                    let args = PortReserve {
                        app: name.to_owned(),
                        spec: PortSpec {
                            port: i64::from(p.target),
                            protocol: Some(p.protocol),
                            description: Some(p.description.clone()),
                            is_primary: None,
                        },
                    };
                    self.bus.call(&args).await.map_err(step(3))?;
                    placed.push(format!("{} {}/{} (host network)", p.service, p.target, p.protocol));
                    continue;
                }
                let args = Allocate {
                    app: name.to_owned(),
                    protocol: Some(p.protocol),
                    preferred: p.file_published.into_iter().map(i64::from).collect(),
                    ..Allocate::default()
                };
                let reply = self.bus.call(&args).await.map_err(step(3))?;
                let port = reply.ports.first().copied();
                let port = port.ok_or_else(|| (3, BusError::internal("the allocator returned no port")))?;
                ctx.allocations.insert(key, port);
                placed.push(port_placement(p, port, &reply));
            }
            let summary = if placed.is_empty() {
                "no ports".to_owned()
            } else {
                placed.join("; ")
            };
            self.progress(job, name, 3, "running", summary).await;

            // 4. directories, every bind-mount source included: each one new is
            // recorded, so a rollback removes it and nothing that was there before
            let t = compose::translate(text, &ctx).map_err(|e| (4, BusError::bad_request(e.to_string())))?;
            for dir in [app_dir.join("appconfig"), ctx.app_data.clone()]
                .iter()
                .chain(&t.bind_dirs)
            {
                create_recorded(dir, &roots, &mut marker.created)
                    .map_err(|e| (4, io_error(&dir.display().to_string(), e)))?;
            }
            marker.write(&marker_path).map_err(step(4))?;
            self.progress(
                job,
                name,
                4,
                "running",
                format!("{} directories", t.bind_dirs.len() + 2),
            )
            .await;

            // 5. the compose file and the deployed specs
            std::fs::write(&compose_path, text).map_err(|e| (5, io_error("compose file", e)))?;
            let spec = StackSpec::from_translation(name, &self.instance, &t);
            let json = serde_json::to_vec_pretty(&spec).map_err(|e| (5, BusError::internal(e.to_string())))?;
            std::fs::write(self.stack_file(name), json).map_err(|e| (5, io_error("stack file", e)))?;
            self.progress(job, name, 5, "running", compose_path.display().to_string())
                .await;

            // 6. the app's name
            let web = t.web_port();
            let domain = crate::core::domain(&self.bus).await.map_err(step(6))?;
            let fqdn = format!("{name}.{domain}");
            match web {
                Some(port) => {
                    let args = FqdnAdd {
                        app: name.to_owned(),
                        spec: FqdnSpec {
                            fqdn: fqdn.clone(),
                            backend_port: i64::from(port),
                            ssl_enabled: None,
                        },
                    };
                    self.bus.call(&args).await.map_err(step(6))?;
                    self.progress(job, name, 6, "running", format!("{fqdn} -> :{port}"))
                        .await;
                }
                None => {
                    self.progress(job, name, 6, "running", "no published port: no name")
                        .await
                }
            }

            // 7. deploy (the volumes already there are recorded first: a rollback
            // removes only those the deploy creates), 8. converge
            let docker = self.docker().await.map_err(step(7))?;
            let before = stack::existing_volumes(&docker, &spec)
                .await
                .map_err(|e| (7, docker_error(e)))?;
            marker.volumes_before = Some(before);
            marker.write(&marker_path).map_err(step(7))?;
            stack::deploy(&docker, &spec).await.map_err(|e| (7, docker_error(e)))?;
            self.progress(
                job,
                name,
                7,
                "running",
                format!("{} service(s) deployed", spec.services.len()),
            )
            .await;
            stack::wait_converged(&docker, &spec, self.config.orchestrator.converge_timeout)
                .await
                .map_err(|e| (8, BusError::new(ErrorCode::Timeout, e)))?;
            std::fs::remove_file(&marker_path).map_err(|e| (8, io_error("install marker", e)))?;
            Ok(())
        }
        .await;
        match &result {
            Ok(()) => {}
            // Not registered: the name may be someone else's by now (created
            // between the check and step 2), so only what this install created on
            // disk is undone.
            Err((2, _)) => {
                let _ = std::fs::remove_file(&marker_path);
                for dir in marker.created.iter().rev() {
                    // Only if empty: never another's files.
                    let _ = std::fs::remove_dir(dir);
                }
            }
            Err(_) => self.undo_install(name, keep_data, Some(marker)).await,
        }
        result
    }

    /// Removes everything an install created (its marker's ledger; without one,
    /// the app's own directory), and the app's services, networks and the volumes
    /// its deploy created.
    async fn undo_install(&self, name: &str, keep_data: bool, marker: Option<Marker>) {
        let marker = marker.unwrap_or_else(|| Marker {
            created: vec![self.app_dir(name)],
            ..Marker::default()
        });
        if let Ok(docker) = self.docker().await {
            // Volumes there before the deploy (kept from an earlier removal) stay.
            let keep: Option<Vec<String>> = if keep_data {
                None
            } else {
                Some(marker.volumes_before.clone().unwrap_or_default())
            };
            match stack::remove(&docker, name, &self.instance, keep.as_deref()).await {
                Ok(removal) if !removal.volumes_left.is_empty() => {
                    warn!(app = name, volumes = ?removal.volumes_left, "rollback: volumes still in use were left");
                }
                Ok(_) => {}
                Err(e) => warn!(app = name, error = %e, "rollback: stack not removed"),
            }
        }
        match self.bus.call(&AppDelete { name: name.to_owned() }).await {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => warn!(app = name, error = %e, "rollback: app row not removed"),
        }
        let app_dir = self.app_dir(name);
        let _ = std::fs::remove_file(app_dir.join(INSTALLING_MARKER));
        for dir in marker.created.iter().rev() {
            if !self.may_remove(dir) {
                warn!(app = name, dir = %dir.display(), "rollback: not under the data root; left alone");
                continue;
            }
            // With keep_data only the app's configuration goes.
            if keep_data && !dir.starts_with(app_dir.join("appconfig")) && *dir != app_dir {
                continue;
            }
            let removed = if keep_data && *dir == app_dir {
                std::fs::remove_dir_all(app_dir.join("appconfig"))
            } else {
                std::fs::remove_dir_all(dir)
            };
            if let Err(e) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(app = name, dir = %dir.display(), error = %e, "rollback: directory not removed");
            }
        }
    }

    /// Directories no install owns, however they came to be.
    fn shared_roots(&self) -> Vec<PathBuf> {
        vec![
            self.config.data_dir.clone(),
            self.config.data_dir.join("apps"),
            self.config.shared_dir(),
        ]
    }

    /// Whether a directory an install recorded may be removed: it lies under the
    /// data root or the shared folder and is none of the shared roots (a marker is
    /// a file anyone with the data dir could edit; nothing else is ever removed).
    fn may_remove(&self, dir: &Path) -> bool {
        let roots = self.shared_roots();
        let clean = dir.components().all(|c| !matches!(c, std::path::Component::ParentDir));
        let under = |root: &Path| dir.starts_with(root);
        clean && !roots.iter().any(|r| r == dir) && (under(&self.config.data_dir) || under(&self.config.shared_dir()))
    }

    fn remove_files(&self, name: &str, keep_data: bool) {
        let app_dir = self.app_dir(name);
        let result = if keep_data {
            let _ = std::fs::remove_file(app_dir.join(INSTALLING_MARKER));
            std::fs::remove_dir_all(app_dir.join("appconfig"))
        } else {
            std::fs::remove_dir_all(&app_dir)
        };
        if let Err(e) = result
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(app = name, error = %e, "app files not removed");
        }
    }

    /// Rolls back installs a crash interrupted (their marker is still there).
    pub async fn recover_interrupted_installs(&self) {
        let Ok(entries) = std::fs::read_dir(self.config.data_dir.join("apps")) else {
            return;
        };
        for entry in entries.flatten() {
            let Some(marker) = Marker::read(&entry.path().join(INSTALLING_MARKER)) else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            if validate::name("name", &name).is_ok() {
                warn!(app = %name, job = %marker.job, "rolling back an install interrupted by a restart");
                self.undo_install(&name, false, Some(marker)).await;
            }
        }
    }

    /// Refuses an install whose images are not on the box (unless Swarm may pull).
    async fn require_images(&self, docker: &Docker, t: &Translation) -> Result<(), BusError> {
        if self.config.orchestrator.pull_missing_images {
            return Ok(());
        }
        let wanted = images_of(&t.services);
        let states = images::check(docker, &self.config.orchestrator.local_registry, &wanted).await;
        let missing: Vec<&str> = states.iter().filter(|s| !s.present).map(|s| s.image.as_str()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(BusError::not_found(images::missing_message(&missing)).with_details(json!({ "missing_images": missing })))
    }

    /// `image.list`: the images asked for, or every image an installed app uses,
    /// and whether this box has each.
    pub async fn image_list(&self, args: ImageList) -> Result<ImageReport, BusError> {
        let docker = self.docker().await?;
        // Each image once, in the order asked (or found), with the apps using it.
        let mut users: Vec<(String, Vec<String>)> = Vec::new();
        let mut add = |image: String, app: Option<&str>| {
            let at = match users.iter().position(|(i, _)| *i == image) {
                Some(at) => at,
                None => {
                    users.push((image, Vec::new()));
                    users.len() - 1
                }
            };
            if let Some(app) = app {
                users[at].1.push(app.to_owned());
            }
        };
        match args.images {
            Some(images) => {
                for image in images {
                    if image.is_empty() || image.len() > 512 || image.contains(char::is_whitespace) {
                        return Err(BusError::bad_request(format!(
                            "images: '{}' is not an image reference",
                            validate::truncate(&image, 64)
                        )));
                    }
                    add(image, None);
                }
            }
            None => {
                let apps = self.bus.call(&AppList::default()).await?;
                for app in &apps {
                    let name = app.app.name.as_str();
                    let services = match self.load_stack(name) {
                        Some(spec) => spec.services,
                        None => continue,
                    };
                    for image in images_of(&services) {
                        add(image, Some(name));
                    }
                }
            }
        }
        let wanted: Vec<String> = users.iter().map(|(i, _)| i.clone()).collect();
        let states = images::check(&docker, &self.config.orchestrator.local_registry, &wanted).await;
        let other_nodes = other_nodes(&docker).await;
        let images = states
            .into_iter()
            .zip(users)
            .map(|(state, (_, apps))| ImageRow { state, apps })
            .collect();
        Ok(ImageReport {
            images,
            other_nodes_unchecked: other_nodes,
        })
    }

    /// `image.load`: starts loading an image archive from this box into Docker;
    /// replies at once with the job, then publishes its progress (bytes sent).
    pub async fn image_load(self: &Arc<Self>, args: ImageLoad) -> Result<LoadStarted, BusError> {
        let path = PathBuf::from(&args.path);
        if !path.is_absolute() {
            return Err(BusError::bad_request("path: must be absolute (a file on the box)"));
        }
        let meta = std::fs::metadata(&path).map_err(|e| BusError::bad_request(format!("path: {e}")))?;
        if !meta.is_file() {
            return Err(BusError::bad_request("path: not a regular file"));
        }
        let docker = self.docker().await?;
        let job = format!(
            "image-load-{}",
            self.next_job.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let this = Arc::clone(self);
        let job_id = job.clone();
        let size = meta.len();
        tokio::spawn(async move {
            let event = move |step: u64, of: u64, status: &str, message: String| Progress {
                job: job_id.clone(),
                step: step as usize,
                of: of.max(1) as usize,
                name: "load".into(),
                status: status.into(),
                code: (status == "failed").then_some(ErrorCode::BadRequest),
                message,
            };
            const MIB: u64 = 1024 * 1024;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
            let publisher = {
                let this = Arc::clone(&this);
                let event = event.clone();
                tokio::spawn(async move {
                    // One event per MiB at most: a bar, not a flood.
                    let mut last = u64::MAX;
                    while let Some((sent, total)) = rx.recv().await {
                        if sent / MIB != last / MIB || sent == total {
                            last = sent;
                            let message = format!(
                                "{:.1} of {:.1} MiB",
                                sent as f64 / MIB as f64,
                                total as f64 / MIB as f64
                            );
                            this.publish_progress(&topics::image_progress(), event(sent, total, "running", message))
                                .await;
                        }
                    }
                })
            };
            let mut report = move |sent: u64, total: u64| {
                let _ = tx.send((sent, total));
            };
            let result = images::load(&docker, &path, &mut report).await;
            // The sender goes with `report`: the publisher drains and ends.
            drop(report);
            let _ = publisher.await;
            let total = size.max(1);
            let last = match result {
                Ok(loaded) => {
                    info!(path = %path.display(), images = ?loaded, "images loaded");
                    event(total, total, "done", format!("loaded {}", loaded.join(", ")))
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "image load failed");
                    event(0, total, "failed", e)
                }
            };
            this.publish_progress(&topics::image_progress(), last).await;
        });
        Ok(LoadStarted {
            job,
            path: args.path,
            bytes: size,
        })
    }

    async fn require_app(&self, name: &str) -> Result<AppRecord, BusError> {
        validate::name("name", name)?;
        self.bus.call(&AppGet { name: name.to_owned() }).await
    }

    async fn stack_services(&self, docker: &Docker, name: &str) -> Result<Vec<String>, BusError> {
        Ok(stack::managed_services(docker, &self.instance)
            .await
            .map_err(docker_error)?
            .iter()
            .filter(|s| stack::stack_of(s) == Some(name))
            .map(|s| stack::service_name(s).to_owned())
            .collect())
    }

    pub async fn start(&self, name: &str) -> Result<AppChanged, BusError> {
        self.require_app(name).await?;
        self.start_known(name).await
    }

    /// [`Self::start`] of an app already looked up.
    async fn start_known(&self, name: &str) -> Result<AppChanged, BusError> {
        self.stopped.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        let docker = self.docker().await?;
        let spec = self
            .load_stack(name)
            .ok_or_else(|| BusError::not_found(format!("'{name}' has no deployment")))?;
        stack::deploy(&docker, &spec).await.map_err(docker_error)?;
        self.refresh_status(name).await;
        Ok(AppChanged {
            app: name.to_owned(),
            started: Some(true),
            ..AppChanged::default()
        })
    }

    fn is_stopped(&self, name: &str) -> bool {
        self.stopped.lock().unwrap_or_else(|p| p.into_inner()).contains(name)
    }

    pub async fn stop(self: &Arc<Self>, name: &str) -> Result<AppChanged, BusError> {
        self.require_app(name).await?;
        self.stop_known(name).await
    }

    /// [`Self::stop`] of an app already looked up. Its tasks go on serving until
    /// they exit (Swarm's stop grace period), so its status says `stopping` and is
    /// followed until they are gone.
    async fn stop_known(self: &Arc<Self>, name: &str) -> Result<AppChanged, BusError> {
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned());
        let docker = self.docker().await?;
        for service in self.stack_services(&docker, name).await? {
            stack::stop(&docker, &service).await.map_err(docker_error)?;
        }
        self.refresh_status(name).await;
        let (this, app) = (Arc::clone(self), name.to_owned());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + STOP_FOLLOW;
            while tokio::time::Instant::now() < deadline {
                let stopping = this
                    .statuses
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&app)
                    .is_some_and(|s| s.health == "stopping");
                if !stopping {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                this.refresh_status(&app).await;
            }
        });
        Ok(AppChanged {
            app: name.to_owned(),
            stopped: Some(true),
            ..AppChanged::default()
        })
    }

    pub async fn restart(&self, name: &str) -> Result<AppChanged, BusError> {
        self.require_app(name).await?;
        let docker = self.docker().await?;
        let services = self.stack_services(&docker, name).await?;
        if services.is_empty() {
            return Err(BusError::conflict(format!("'{name}' is not deployed")));
        }
        for service in services {
            stack::force_update(&docker, &service).await.map_err(docker_error)?;
        }
        Ok(AppChanged {
            app: name.to_owned(),
            restarted: Some(true),
            ..AppChanged::default()
        })
    }

    pub async fn set_enabled(self: &Arc<Self>, name: &str, enabled: bool) -> Result<AppChanged, BusError> {
        self.require_app(name).await?;
        self.bus
            .call(&AppUpdate {
                name: name.to_owned(),
                enabled: Some(enabled),
                ..AppUpdate::default()
            })
            .await?;
        if enabled {
            self.start_known(name).await
        } else {
            self.stop_known(name).await
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
    async fn refresh_status(&self, name: &str) {
        let status = match self.docker().await {
            Ok(docker) => match stack::managed_services(&docker, &self.instance).await {
                Ok(services) => compute_status(&docker, name, &services, self.is_stopped(name)).await,
                Err(e) => unknown(format!("Docker: {e}")),
            },
            Err(e) => unknown(e.message),
        };
        self.publish_status(name, status).await;
    }

    async fn publish_status(&self, name: &str, status: AppStatus) {
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
                    replicas: match &mode.replicated {
                        Some(r) => Some(r.replicas.unwrap_or(0)),
                        None => None,
                    },
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

fn unknown(error: String) -> AppStatus {
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
async fn compute_status(
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

/// The images of a stack's services, each once.
fn images_of(services: &[bollard::models::ServiceSpec]) -> Vec<String> {
    let mut images = Vec::new();
    for image in services
        .iter()
        .filter_map(|s| s.task_template.as_ref()?.container_spec.as_ref()?.image.clone())
    {
        if !images.contains(&image) {
            images.push(image);
        }
    }
    images
}

/// Swarm nodes other than this one: their images cannot be checked from here.
async fn other_nodes(docker: &Docker) -> usize {
    docker
        .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
        .await
        .map_or(0, |nodes| nodes.len().saturating_sub(1))
}

/// How a published port was placed, for the install's progress: the port the app
/// got and, when it is not the one the file asked for, why.
fn port_placement(p: &crate::compose::PublishedPort, got: u16, reply: &Allocated) -> String {
    let placed = format!("{} {}/{} -> {got}", p.service, p.target, p.protocol);
    match p.file_published {
        Some(asked) if asked != got => {
            let why = reply.notes.first().map_or("not free", String::as_str);
            format!("{placed} (the file asked for {asked}: {why})")
        }
        Some(_) => placed,
        None => format!("{placed} (the file names no host port)"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_install_records_only_what_it_created_below_the_shared_roots() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let roots = vec![data.clone(), data.join("apps"), data.join("shared")];
        std::fs::create_dir_all(data.join("shared/Media")).unwrap();
        let mut created = Vec::new();
        // The first install on a fresh box creates `apps/` too: not its own.
        create_recorded(&data.join("apps/x"), &roots, &mut created).unwrap();
        create_recorded(&data.join("apps/x/appdata/db"), &roots, &mut created).unwrap();
        create_recorded(&data.join("shared/Media/Music"), &roots, &mut created).unwrap();
        create_recorded(&data.join("shared/Media"), &roots, &mut created).unwrap();
        create_recorded(&data.join("shared/Downloads/x"), &roots, &mut created).unwrap();
        assert_eq!(
            created,
            [
                data.join("apps/x"),
                data.join("shared/Media/Music"),
                data.join("shared/Downloads")
            ]
        );
        assert!(data.join("apps/x/appdata/db").is_dir());
    }
}
