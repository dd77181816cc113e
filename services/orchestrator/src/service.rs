//! The orchestrator service: install, lifecycle commands, the reconciler and the
//! runtime status of every app.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use cubeos_shared::topics::{
    self,
    service::{PORT_ALLOCATOR, REGISTRY},
};
use cubeos_shared::{Bus, BusError, Config, ErrorCode, validate};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::compose::{self, Context, PortKey, Translation};
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

/// Marks an install in progress: a restart finding it rolls the install back.
const INSTALLING_MARKER: &str = ".installing";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallArgs {
    /// The compose file's text, or
    pub compose: Option<String>,
    /// an absolute path to it on the box.
    pub path: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub force: bool,
    /// Keep the app's data directory if the install fails.
    #[serde(default)]
    pub keep_data: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppName {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveArgs {
    pub name: String,
    #[serde(default)]
    pub keep_data: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsArgs {
    pub name: String,
    pub tail: Option<i64>,
    /// Unix seconds.
    pub since: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {
    pub name: Option<String>,
}

/// `cubeos/state/apps/<name>/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStatus {
    pub running: bool,
    /// `running`, `starting`, `stopped`, `failing`, `unknown`.
    pub health: String,
    pub replicas: String,
    pub last_started: String,
    pub error: String,
}

/// A progress event on `cubeos/events/apps/<name>/progress`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub job: String,
    pub step: usize,
    pub of: usize,
    pub name: String,
    /// `running`, `done` (the whole job), `failed`.
    pub status: String,
    pub message: String,
}

pub struct Orchestrator {
    pub bus: Bus,
    pub config: Arc<Config>,
    /// This installation's id: only Swarm objects labelled with it are touched.
    instance: String,
    docker: Mutex<Option<Docker>>,
    /// Apps a person stopped: the reconciler leaves them at 0 until started (or
    /// until the next boot: `enabled` means "runs after boot").
    stopped: std::sync::Mutex<HashSet<String>>,
    /// Apps being installed or removed: the reconciler leaves them alone.
    installing: std::sync::Mutex<HashSet<String>>,
    statuses: std::sync::Mutex<BTreeMap<String, AppStatus>>,
    next_job: std::sync::atomic::AtomicU64,
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
            config,
            docker: Mutex::new(None),
            stopped: Default::default(),
            installing: Default::default(),
            statuses: Default::default(),
            next_job: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// The Docker client, connecting (and negotiating the API version) on demand.
    pub async fn docker(&self) -> Result<Docker, BusError> {
        let mut slot = self.docker.lock().await;
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let d = cubeos_shared::docker::connect(&self.config.docker).await?;
        *slot = Some(d.clone());
        Ok(d)
    }

    async fn forget_docker(&self) {
        *self.docker.lock().await = None;
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
            .request(
                REGISTRY,
                "state.set",
                &json!({ "key": "swarm_initialized", "value": "true" }),
            )
            .await?;
        Ok(())
    }

    async fn progress(&self, job: &str, app: &str, step: usize, status: &str, message: impl Into<String>) {
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
            message: message.into(),
        };
        if let Err(e) = self.bus.publish_event(&topics::app_progress(app), &event).await {
            warn!(error = %e, "progress event not sent");
        }
    }

    /// Validates an install and starts it; replies at once with the job id.
    pub async fn install(self: &Arc<Self>, args: InstallArgs) -> Result<Value, BusError> {
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
        match self.bus.request(REGISTRY, "app.get", &json!({ "name": name })).await {
            Ok(_) => {
                return Err(BusError::conflict(format!(
                    "an app named '{name}' is already installed"
                )));
            }
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
        self.docker().await?;
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
                    this.progress(&job_id, &app, step, "failed", message).await;
                }
            }
            this.reconcile().await;
        });
        Ok(json!({ "job": job, "app": name, "steps": INSTALL_STEPS }))
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
        let step = |n: usize| move |e: BusError| (n, e);
        let result = async {
            // 2. register (the marker first: a crash after this point is undone at restart)
            std::fs::create_dir_all(&app_dir).map_err(|e| (2, io_error("app directory", e)))?;
            std::fs::write(app_dir.join(INSTALLING_MARKER), job).map_err(|e| (2, io_error("install marker", e)))?;
            let compose_path = app_dir.join("appconfig").join("docker-compose.yml");
            let mut record = serde_json::to_value(&first.app).map_err(|e| (2, BusError::internal(e.to_string())))?;
            record["compose_path"] = json!(compose_path.display().to_string());
            record["data_path"] = json!(ctx.app_data.display().to_string());
            self.bus
                .request(REGISTRY, "app.create", &record)
                .await
                .map_err(step(2))?;
            self.progress(job, name, 2, "running", "app registered").await;

            // 3. allocate ports: the allocator's choices replace the file's
            let mut seen = HashSet::new();
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
                    let args =
                        json!({ "app": name, "port": p.target, "protocol": p.protocol, "description": p.description });
                    self.bus
                        .request(REGISTRY, "port.reserve", &args)
                        .await
                        .map_err(step(3))?;
                    continue;
                }
                let preferred: Vec<u16> = p.file_published.into_iter().collect();
                let args = json!({ "app": name, "protocol": p.protocol, "preferred": preferred });
                let reply = self
                    .bus
                    .request(PORT_ALLOCATOR, "allocate", &args)
                    .await
                    .map_err(step(3))?;
                let port = reply["ports"][0].as_u64().and_then(|v| u16::try_from(v).ok());
                let port = port.ok_or_else(|| (3, BusError::internal("the allocator returned no port")))?;
                ctx.allocations.insert(key, port);
            }
            self.progress(
                job,
                name,
                3,
                "running",
                format!("{} port(s) allocated", ctx.allocations.len()),
            )
            .await;

            // 4. directories, every bind-mount source included
            let t = compose::translate(text, &ctx).map_err(|e| (4, BusError::bad_request(e.to_string())))?;
            for dir in [app_dir.join("appconfig"), ctx.app_data.clone()]
                .iter()
                .chain(&t.bind_dirs)
            {
                std::fs::create_dir_all(dir).map_err(|e| (4, io_error(&dir.display().to_string(), e)))?;
            }
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
                    let args = json!({ "app": name, "fqdn": fqdn, "backend_port": port });
                    self.bus.request(REGISTRY, "fqdn.add", &args).await.map_err(step(6))?;
                    self.progress(job, name, 6, "running", format!("{fqdn} -> :{port}"))
                        .await;
                }
                None => {
                    self.progress(job, name, 6, "running", "no published port: no name")
                        .await
                }
            }

            // 7. deploy, 8. converge
            let docker = self.docker().await.map_err(step(7))?;
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
            std::fs::remove_file(app_dir.join(INSTALLING_MARKER)).map_err(|e| (8, io_error("install marker", e)))?;
            Ok(())
        }
        .await;
        match &result {
            Ok(()) => {}
            // Not registered: the name may be someone else's by now (created
            // between the check and step 2), so only the marker is ours to undo.
            Err((2, _)) => {
                let _ = std::fs::remove_file(app_dir.join(INSTALLING_MARKER));
            }
            Err(_) => self.undo_install(name, keep_data).await,
        }
        result
    }

    /// Removes everything an install may have created.
    async fn undo_install(&self, name: &str, keep_data: bool) {
        if let Ok(docker) = self.docker().await
            && let Err(e) = stack::remove(&docker, name, &self.instance, !keep_data).await
        {
            warn!(app = name, error = %e, "rollback: stack not removed");
        }
        match self.bus.request(REGISTRY, "app.delete", &json!({ "name": name })).await {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => warn!(app = name, error = %e, "rollback: app row not removed"),
        }
        self.remove_files(name, keep_data);
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
            if entry.path().join(INSTALLING_MARKER).exists() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if validate::name("name", &name).is_ok() {
                    warn!(app = %name, "rolling back an install interrupted by a restart");
                    self.undo_install(&name, false).await;
                }
            }
        }
    }

    async fn require_app(&self, name: &str) -> Result<Value, BusError> {
        validate::name("name", name)?;
        self.bus.request(REGISTRY, "app.get", &json!({ "name": name })).await
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

    pub async fn start(&self, name: &str) -> Result<Value, BusError> {
        self.require_app(name).await?;
        self.start_known(name).await
    }

    /// [`Self::start`] of an app already looked up.
    async fn start_known(&self, name: &str) -> Result<Value, BusError> {
        self.stopped.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        let docker = self.docker().await?;
        let spec = self
            .load_stack(name)
            .ok_or_else(|| BusError::not_found(format!("'{name}' has no deployment")))?;
        stack::deploy(&docker, &spec).await.map_err(docker_error)?;
        self.refresh_status(name).await;
        Ok(json!({ "app": name, "started": true }))
    }

    pub async fn stop(&self, name: &str) -> Result<Value, BusError> {
        self.require_app(name).await?;
        self.stop_known(name).await
    }

    /// [`Self::stop`] of an app already looked up.
    async fn stop_known(&self, name: &str) -> Result<Value, BusError> {
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned());
        let docker = self.docker().await?;
        for service in self.stack_services(&docker, name).await? {
            stack::stop(&docker, &service).await.map_err(docker_error)?;
        }
        self.refresh_status(name).await;
        Ok(json!({ "app": name, "stopped": true }))
    }

    pub async fn restart(&self, name: &str) -> Result<Value, BusError> {
        self.require_app(name).await?;
        let docker = self.docker().await?;
        let services = self.stack_services(&docker, name).await?;
        if services.is_empty() {
            return Err(BusError::conflict(format!("'{name}' is not deployed")));
        }
        for service in services {
            stack::force_update(&docker, &service).await.map_err(docker_error)?;
        }
        Ok(json!({ "app": name, "restarted": true }))
    }

    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<Value, BusError> {
        self.require_app(name).await?;
        self.bus
            .request(REGISTRY, "app.update", &json!({ "name": name, "enabled": enabled }))
            .await?;
        if enabled {
            self.start_known(name).await
        } else {
            self.stop_known(name).await
        }
    }

    pub async fn remove(&self, args: RemoveArgs) -> Result<Value, BusError> {
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
            stack::remove(&docker, &args.name, &self.instance, !args.keep_data)
                .await
                .map_err(docker_error)?;
            self.bus
                .request(REGISTRY, "app.delete", &json!({ "name": args.name }))
                .await
        }
        .await;
        self.installing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&args.name);
        result?;
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
        Ok(json!({ "app": args.name, "removed": true, "data_kept": args.keep_data }))
    }

    pub async fn logs(&self, args: LogsArgs) -> Result<Value, BusError> {
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
        Ok(json!({ "app": args.name, "lines": lines }))
    }

    pub async fn status(&self, name: Option<String>) -> Result<Value, BusError> {
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
                Ok(json!({ "app": name, "status": status }))
            }
            None => Ok(
                serde_json::to_value(&*self.statuses.lock().unwrap_or_else(|p| p.into_inner())).unwrap_or(Value::Null),
            ),
        }
    }

    /// Recomputes one app's status from Swarm and publishes it if it changed.
    async fn refresh_status(&self, name: &str) {
        let status = match self.docker().await {
            Ok(docker) => match stack::managed_services(&docker, &self.instance).await {
                Ok(services) => compute_status(&docker, name, &services).await,
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
        let apps = match self.bus.request(REGISTRY, "app.list", &json!({})).await {
            Ok(apps) => apps,
            Err(e) => {
                warn!(error = %e, "reconcile: registry unavailable");
                return;
            }
        };
        let names: Vec<(String, bool)> = apps
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| Some((a["name"].as_str()?.to_owned(), a["enabled"].as_bool().unwrap_or(true))))
            .collect();
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
            let status = compute_status(&docker, name, &services).await;
            self.publish_status(name, status).await;
        }
        let mut keep: HashSet<String> = names.iter().map(|(n, _)| n.clone()).collect();
        keep.extend(busy);
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

async fn compute_status(docker: &Docker, name: &str, services: &[bollard::models::Service]) -> AppStatus {
    let mine: Vec<&bollard::models::Service> = services.iter().filter(|s| stack::stack_of(s) == Some(name)).collect();
    if mine.is_empty() {
        return AppStatus {
            running: false,
            health: "stopped".into(),
            replicas: "0/0".into(),
            last_started: String::new(),
            error: "not deployed".into(),
        };
    }
    let (mut running, mut desired, mut error, mut last) = (0i64, 0i64, String::new(), String::new());
    for s in &mine {
        let want = s.spec.as_ref().map_or(1, StackSpec::replicas);
        desired += want;
        // The service list already counts running tasks; the tasks themselves are
        // asked for only when some are missing, for Docker's error.
        let counted = s
            .service_status
            .as_ref()
            .and_then(|st| st.running_tasks)
            .map(|r| r as i64);
        let r = match counted {
            Some(r) if r >= want => r,
            _ => match stack::task_summary(docker, stack::service_name(s)).await {
                Ok((r, e)) => {
                    if r < want {
                        error = e.unwrap_or_default();
                    }
                    r
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
        (_, 0) => "stopped",
        (r, d) if r >= d => "running",
        _ if !error.is_empty() => "failing",
        _ => "starting",
    };
    AppStatus {
        running: running > 0 && running >= desired,
        health: health.into(),
        replicas: format!("{running}/{desired}"),
        last_started: last,
        error,
    }
}

/// Keeps the reconciler going: at start, every interval, and on Docker service
/// events; reconnects to Docker with backoff when it goes away.
pub async fn reconcile_loop(orch: Arc<Orchestrator>, mut shutdown: cubeos_shared::service::Shutdown) {
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
