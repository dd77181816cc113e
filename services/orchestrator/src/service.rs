//! The orchestrator service's state and what its parts share: the Docker link,
//! the app directories, the core apps' deploy, the image commands and the jobs.
//! The commands live with their part: [`crate::install`], [`crate::lifecycle`],
//! [`crate::status`], and the reconciler in [`crate::reconciler`].

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use cubeos_contract::api::orchestrator::*;
use cubeos_contract::api::registry::{AppGet, AppList, StateSet};
use cubeos_contract::models::AppRecord;
use cubeos_contract::topics;
use cubeos_contract::validate;
use cubeos_kit::docker::DockerLink;
use cubeos_kit::job::Jobs;
use cubeos_kit::{Bus, BusError, Config, ErrorCode};
use tracing::{info, warn};

use crate::images;
use crate::stack::{self, StackSpec};
use crate::store::Store;

/// How long an unreachable Docker is believed down before commands try again.
const DOCKER_RETRY: Duration = Duration::from_secs(1);

/// The most images one `image.list` may name.
const MAX_IMAGES_ASKED: usize = 256;

/// Jobs whose last progress `job.get` still answers.
const JOBS_KEPT: usize = 64;

pub struct Orchestrator {
    pub bus: Bus,
    pub config: Arc<Config>,
    /// This installation's id: only Swarm objects labelled with it are touched.
    pub(crate) instance: String,
    docker: DockerLink,
    /// Apps a person stopped: the reconciler leaves them at 0 until started (or
    /// until the next boot: `enabled` means "runs after boot").
    pub(crate) stopped: std::sync::Mutex<HashSet<String>>,
    /// Apps being installed or removed: the reconciler leaves them alone.
    pub(crate) installing: std::sync::Mutex<HashSet<String>>,
    pub(crate) statuses: std::sync::Mutex<BTreeMap<String, AppStatus>>,
    /// Install, lifecycle and image jobs, and their last progress for `job.get`.
    pub jobs: Arc<Jobs>,
    /// The offline app store in the data dir.
    pub(crate) store: Store,
}

pub(crate) fn docker_error(e: bollard::errors::Error) -> BusError {
    BusError::unavailable(format!("Docker: {e}"))
}

pub(crate) fn io_error(what: &str, e: std::io::Error) -> BusError {
    BusError::internal(format!("{what}: {e}"))
}

impl Orchestrator {
    pub fn new(bus: Bus, config: Arc<Config>) -> std::io::Result<Self> {
        let instance = config.instance_id()?;
        Ok(Orchestrator {
            jobs: Jobs::new(bus.clone(), JOBS_KEPT),
            bus,
            store: Store::new(Arc::clone(&config), instance.clone()),
            instance,
            docker: DockerLink::new(config.docker.clone(), DOCKER_RETRY),
            config,
            stopped: Default::default(),
            installing: Default::default(),
            statuses: Default::default(),
        })
    }

    /// The Docker client, connecting (and negotiating the API version) on demand.
    pub async fn docker(&self) -> Result<Docker, BusError> {
        self.docker.get().await
    }

    pub(crate) async fn forget_docker(&self) {
        self.docker.forget().await;
    }

    /// This installation's id, as its Swarm objects are labelled.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub(crate) fn app_dir(&self, name: &str) -> PathBuf {
        self.config.app_dir(name)
    }

    /// Where an app's deployed specs are kept: next to its compose file, under
    /// `apps/` or, for core apps, `coreapps/`.
    pub(crate) fn stack_file(&self, name: &str) -> PathBuf {
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

    pub(crate) fn load_stack(&self, name: &str) -> Option<StackSpec> {
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

    /// `image.list`: the images asked for, or every image an installed app uses,
    /// and whether this box has each.
    pub async fn image_list(&self, args: ImageList) -> Result<ImageReport, BusError> {
        // Checked before anything is asked of Docker: each image costs an
        // inspect (and maybe a registry request), and any signed-in person may ask.
        if let Some(images) = &args.images
            && images.len() > MAX_IMAGES_ASKED
        {
            return Err(BusError::bad_request(format!(
                "images: {} asked, at most {MAX_IMAGES_ASKED}",
                images.len()
            )));
        }
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
        let job = self.jobs.next_id("image-load");
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
                            this.jobs
                                .publish(&topics::image_progress(), event(sent, total, "running", message))
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
            this.jobs.publish(&topics::image_progress(), last).await;
        });
        Ok(LoadStarted {
            job,
            path: args.path,
            bytes: size,
        })
    }

    pub(crate) async fn require_app(&self, name: &str) -> Result<AppRecord, BusError> {
        validate::name("name", name)?;
        self.bus.call(&AppGet { name: name.to_owned() }).await
    }

    pub(crate) async fn stack_services(&self, docker: &Docker, name: &str) -> Result<Vec<String>, BusError> {
        Ok(stack::managed_services(docker, &self.instance)
            .await
            .map_err(docker_error)?
            .iter()
            .filter(|s| stack::stack_of(s) == Some(name))
            .map(|s| stack::service_name(s).to_owned())
            .collect())
    }

    pub(crate) fn is_stopped(&self, name: &str) -> bool {
        self.stopped.lock().unwrap_or_else(|p| p.into_inner()).contains(name)
    }
}

/// The images of a stack's services, each once.
pub(crate) fn images_of(services: &[bollard::models::ServiceSpec]) -> Vec<String> {
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
pub(crate) async fn other_nodes(docker: &Docker) -> usize {
    docker
        .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
        .await
        .map_or(0, |nodes| nodes.len().saturating_sub(1))
}
