//! `install`: a compose file to a running app, as a job of [`InstallStep`]s.
//! Every step is undone when a later one fails, and an install a crash
//! interrupted (its marker file is still there) is rolled back at the next start.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard::Docker;
use cubeos_contract::api::orchestrator::*;
use cubeos_contract::api::port_allocator::{Allocate, Allocated};
use cubeos_contract::api::registry::{AppDelete, AppGet, FqdnAdd, FqdnSpec, PortReserve, PortSpec};
use cubeos_contract::topics;
use cubeos_contract::validate;
use cubeos_kit::job::{Job, Step};
use cubeos_kit::{BusError, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::warn;

use crate::images;
use crate::service::{Orchestrator, docker_error, images_of, io_error};
use crate::stack::{self, StackSpec};
use crate::store;
use cubeos_compose::{self as compose, Context, PortKey, Translation};

/// The steps of an install, in order (DESIGN: each is undone on failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallStep {
    Validate,
    Register,
    AllocatePorts,
    CreateDirectories,
    WriteCompose,
    AddName,
    Deploy,
    Converge,
}

impl Step for InstallStep {
    const ALL: &'static [InstallStep] = &[
        InstallStep::Validate,
        InstallStep::Register,
        InstallStep::AllocatePorts,
        InstallStep::CreateDirectories,
        InstallStep::WriteCompose,
        InstallStep::AddName,
        InstallStep::Deploy,
        InstallStep::Converge,
    ];

    fn name(self) -> &'static str {
        match self {
            InstallStep::Validate => "validate",
            InstallStep::Register => "register",
            InstallStep::AllocatePorts => "allocate ports",
            InstallStep::CreateDirectories => "create directories",
            InstallStep::WriteCompose => "write compose",
            InstallStep::AddName => "add name",
            InstallStep::Deploy => "deploy",
            InstallStep::Converge => "converge",
        }
    }
}

/// What an install writes to the app's `appconfig/`.
struct AppFiles {
    compose: String,
    /// The store's icon, for an install from the store that has one.
    icon: Option<Vec<u8>>,
}

/// Marks an install in progress: a restart finding it rolls the install back.
const INSTALLING_MARKER: &str = ".installing";

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

/// A compose file on this box: a regular file, read no further than one byte past
/// the translator's limit (so `/dev/zero` or a huge file cannot exhaust memory).
pub(crate) fn read_compose_file(path: &Path) -> Result<String, BusError> {
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

impl Orchestrator {
    /// Validates an install and starts it; replies at once with the job id.
    pub async fn install(self: &Arc<Self>, args: Install) -> Result<JobStarted, BusError> {
        let (text, stored) = match (&args.compose, &args.path, &args.store) {
            (Some(text), None, None) => (text.clone(), None),
            (None, Some(path), None) => {
                let p = Path::new(path);
                if !p.is_absolute() {
                    return Err(BusError::bad_request("path: must be absolute"));
                }
                (read_compose_file(p)?, None)
            }
            (None, None, Some(id)) => {
                let stored = store::read_app(&self.config, id)?;
                (stored.compose.clone(), Some(stored))
            }
            _ => {
                return Err(BusError::bad_request(
                    "give exactly one of 'compose', 'path' and 'store'",
                ));
            }
        };
        let name = match (args.name.clone(), &args.path, &stored) {
            (Some(name), _, _) => name,
            (None, Some(path), _) => compose::default_name(&text, Path::new(path)),
            (None, None, Some(stored)) => stored.name.clone(),
            (None, None, None) => compose::declared_name(&text)
                .ok_or_else(|| BusError::bad_request("name: the file has no 'name:', give one"))?,
        };
        let files = AppFiles {
            compose: text,
            icon: stored.and_then(|s| s.icon),
        };
        validate::name("name", &name)?;
        for key in args.env.keys() {
            validate::key("env", &key.to_ascii_lowercase())?;
        }
        let mut ctx = Context::for_app(&self.config, &self.instance, &name, &args.env);
        ctx.force = args.force;
        let translation = compose::translate(&files.compose, &ctx).map_err(|e| BusError::bad_request(e.to_string()))?;
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
        let job: Job<InstallStep> = self.jobs.start(&format!("install-{name}"), topics::app_progress(&name));
        let id = job.id().to_owned();
        let this = Arc::clone(self);
        let app = name.clone();
        tokio::spawn(async move {
            job.running(InstallStep::Validate, "compose file validated").await;
            let result = this
                .run_install(&job, &app, &files, ctx, translation, args.keep_data)
                .await;
            this.installing.lock().unwrap_or_else(|p| p.into_inner()).remove(&app);
            match result {
                Ok(()) => job.done("installed and running").await,
                Err((step, e)) => {
                    warn!(app, step = step.name(), error = %e.message, "install failed; rolled back");
                    job.failed(step, &e).await;
                }
            }
            this.reconcile().await;
        });
        Ok(JobStarted {
            job: id,
            app: name,
            steps: InstallStep::names(),
        })
    }

    /// Steps 2.. of an install; on failure everything done is undone and the
    /// failing step returned.
    async fn run_install(
        &self,
        job: &Job<InstallStep>,
        name: &str,
        files: &AppFiles,
        mut ctx: Context,
        first: Translation,
        keep_data: bool,
    ) -> Result<(), (InstallStep, BusError)> {
        let app_dir = self.app_dir(name);
        let marker_path = app_dir.join(INSTALLING_MARKER);
        let mut marker = Marker {
            job: job.id().to_owned(),
            ..Marker::default()
        };
        let step = |n: InstallStep| move |e: BusError| (n, e);
        let result = async {
            // 2. register (the marker first: a crash after this point is undone at restart)
            let roots = self.shared_roots();
            create_recorded(&app_dir, &roots, &mut marker.created)
                .map_err(|e| (InstallStep::Register, io_error("app directory", e)))?;
            marker.write(&marker_path).map_err(step(InstallStep::Register))?;
            let compose_path = app_dir.join("appconfig").join("docker-compose.yml");
            let mut record = first
                .app
                .to_new_app(compose_path.display().to_string(), ctx.app_data.display().to_string());
            if files.icon.is_some() {
                record.icon_url = Some(cubeos_contract::models::app_icon_url(name));
            }
            self.bus.call(&record).await.map_err(step(InstallStep::Register))?;
            job.running(InstallStep::Register, "app registered").await;

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
                    self.bus.call(&args).await.map_err(step(InstallStep::AllocatePorts))?;
                    placed.push(format!("{} {}/{} (host network)", p.service, p.target, p.protocol));
                    continue;
                }
                let args = Allocate {
                    app: name.to_owned(),
                    protocol: Some(p.protocol),
                    preferred: p.file_published.into_iter().map(i64::from).collect(),
                    ..Allocate::default()
                };
                let reply = self.bus.call(&args).await.map_err(step(InstallStep::AllocatePorts))?;
                let port = reply.ports.first().copied();
                let port = port.ok_or_else(|| {
                    (
                        InstallStep::AllocatePorts,
                        BusError::internal("the allocator returned no port"),
                    )
                })?;
                ctx.allocations.insert(key, port);
                placed.push(port_placement(p, port, &reply));
            }
            let summary = if placed.is_empty() {
                "no ports".to_owned()
            } else {
                placed.join("; ")
            };
            job.running(InstallStep::AllocatePorts, summary).await;

            // 4. directories, every bind-mount source included: each one new is
            // recorded, so a rollback removes it and nothing that was there before
            let t = compose::translate(&files.compose, &ctx)
                .map_err(|e| (InstallStep::CreateDirectories, BusError::bad_request(e.to_string())))?;
            for dir in [app_dir.join("appconfig"), ctx.app_data.clone()]
                .iter()
                .chain(&t.bind_dirs)
            {
                create_recorded(dir, &roots, &mut marker.created)
                    .map_err(|e| (InstallStep::CreateDirectories, io_error(&dir.display().to_string(), e)))?;
            }
            marker
                .write(&marker_path)
                .map_err(step(InstallStep::CreateDirectories))?;
            job.running(
                InstallStep::CreateDirectories,
                format!("{} directories", t.bind_dirs.len() + 2),
            )
            .await;

            // 5. the compose file, the store's icon and the deployed specs
            std::fs::write(&compose_path, &files.compose)
                .map_err(|e| (InstallStep::WriteCompose, io_error("compose file", e)))?;
            if let (Some(icon), Some(path)) = (&files.icon, store::app_icon_path(&self.config, name)) {
                std::fs::write(path, icon).map_err(|e| (InstallStep::WriteCompose, io_error("icon", e)))?;
            }
            let spec = StackSpec::from_translation(name, &self.instance, &t);
            let json = serde_json::to_vec_pretty(&spec)
                .map_err(|e| (InstallStep::WriteCompose, BusError::internal(e.to_string())))?;
            std::fs::write(self.stack_file(name), json)
                .map_err(|e| (InstallStep::WriteCompose, io_error("stack file", e)))?;
            job.running(InstallStep::WriteCompose, compose_path.display().to_string())
                .await;

            // 6. the app's name
            let web = t.web_port();
            let domain = crate::core::domain(&self.bus)
                .await
                .map_err(step(InstallStep::AddName))?;
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
                    self.bus.call(&args).await.map_err(step(InstallStep::AddName))?;
                    job.running(InstallStep::AddName, format!("{fqdn} -> :{port}")).await;
                }
                None => job.running(InstallStep::AddName, "no published port: no name").await,
            }

            // 7. deploy (the volumes already there are recorded first: a rollback
            // removes only those the deploy creates), 8. converge
            let docker = self.docker().await.map_err(step(InstallStep::Deploy))?;
            let before = stack::existing_volumes(&docker, &spec)
                .await
                .map_err(|e| (InstallStep::Deploy, docker_error(e)))?;
            marker.volumes_before = Some(before);
            marker.write(&marker_path).map_err(step(InstallStep::Deploy))?;
            stack::deploy(&docker, &spec)
                .await
                .map_err(|e| (InstallStep::Deploy, docker_error(e)))?;
            job.running(
                InstallStep::Deploy,
                format!("{} service(s) deployed", spec.services.len()),
            )
            .await;
            stack::wait_converged(&docker, &spec, self.config.orchestrator.converge_timeout)
                .await
                .map_err(|e| (InstallStep::Converge, BusError::new(ErrorCode::Timeout, e)))?;
            std::fs::remove_file(&marker_path).map_err(|e| (InstallStep::Converge, io_error("install marker", e)))?;
            Ok(())
        }
        .await;
        match &result {
            Ok(()) => {}
            // Not registered: the name may be someone else's by now (created
            // between the check and step 2), so only what this install created on
            // disk is undone.
            Err((InstallStep::Register, _)) => {
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

    pub(crate) fn remove_files(&self, name: &str, keep_data: bool) {
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
        Err(BusError::not_found(compose::missing_images(&missing)).with_details(json!({ "missing_images": missing })))
    }
}

/// How a published port was placed, for the install's progress: the port the app
/// got and, when it is not the one the file asked for, why.
fn port_placement(p: &compose::PublishedPort, got: u16, reply: &Allocated) -> String {
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
