//! The CubeOS orchestrator: apps as Docker Swarm stacks, with Swarm the truth for
//! what runs and the registry for what should run.
//!
//! - `cubeos_compose` (a crate of its own, so that `cubeos app preview` needs no
//!   service) turns a compose file (hand-written or from the CasaOS store) into
//!   the Swarm specs `docker stack deploy` would create, with a report of what
//!   Swarm cannot honour. Pure code.
//! - [`stack`] creates, updates, scales and removes those objects through bollard.
//! - [`reconcile`] decides, as a plain function, what to create, scale and remove.
//! - [`images`] checks that an app's images are on the box (or in the local
//!   registry) before anything is deployed, and loads image archives.
//! - [`store`] keeps the offline app store (a CasaOS store copy in the data dir)
//!   and [`preview`] says what installing a file would do.
//! - [`service`] is the bus service: install jobs with progress events and full
//!   rollback, lifecycle commands, the reconciler loop and runtime status.
//!
//! ## Commands (`cubeos/cmd/orchestrator/<action>`)
//!
//! | action | args | reply |
//! |---|---|---|
//! | `install` | `compose`, `path` or `store`, `name?`, `env?`, `force?`, `keep_data?` | `{job, app, steps}` at once; progress on `cubeos/events/apps/<name>/progress` |
//! | `start` / `stop` / `restart` | `name` | `{app, ...}` |
//! | `enable` / `disable` | `name` | registry `enabled` plus start / stop |
//! | `remove` | `name`, `keep_data?` | `{app, removed, data_kept}` |
//! | `logs` | `name`, `tail?` (100), `since?` (unix s) | `{lines}` |
//! | `status` | `name?` | one status, or all |
//! | `job.get` | `job` | a recent job's last progress event; `not_found` after a restart |
//! | `image.list` | `images?` | `{images: [{image, present, location, size, apps}], other_nodes_unchecked}` |
//! | `image.load` | `path` (absolute, on the box) | `{job, path, bytes}` at once; progress on `cubeos/events/images/progress` |
//! | `store.add` | `path` (absolute: a folder or `.tar`/`.tar.gz`) | `{added, skipped, total}` |
//! | `store.list` | `query?`, `category?` | `{apps: [{id, name, title, ..., missing_images, refusals}], categories, total}` |
//! | `store.get` | `id` | one store app with `description` and `compose` |
//! | `preview` | `compose`, `store` or `app`, `name?` | `{services, ports, env, report, refusals, images, image_hint}` |
//!
//! Publishes retained `cubeos/state/apps/<name>/status`
//! `{running, health, replicas, last_started, error}`; `health` is `running`,
//! `starting`, `failing`, `stopping` (told to stop, its tasks still serving),
//! `stopped`, `not_deployed` (registered, never deployed) or `unknown`.

pub mod core;
pub mod images;
pub mod install;
pub mod lifecycle;
pub mod preview;
pub mod reconcile;
pub mod reconciler;
pub mod service;
pub mod stack;
pub mod status;
pub mod store;

use std::sync::Arc;

use cubeos_contract::api::orchestrator::{
    Disable, Enable, ImageList, ImageLoad, Install, JobGet, Logs, Remove, Restart, Start, Status, Stop,
};
use cubeos_contract::api::store::{Preview, StoreAdd, StoreGet, StoreList};
use cubeos_contract::topics::service::ORCHESTRATOR;
use cubeos_kit::ServiceContext;
use tracing::{info, warn};

use service::Orchestrator;

pub const SERVICE: &str = ORCHESTRATOR;

/// The orchestrator's entry point. Without Docker it still runs: commands answer
/// `unavailable`, statuses say so, and it converges once Docker is back.
pub async fn run(ctx: ServiceContext) -> anyhow::Result<()> {
    let ServiceContext { config, bus, shutdown } = ctx;
    let orch = Arc::new(Orchestrator::new(bus.clone(), config)?);
    bus.bind(&orch, |o, _, a: Install| async move { o.install(a).await });
    bus.bind(&orch, |o, _, a: Start| async move { o.start(&a.name).await });
    bus.bind(&orch, |o, _, a: Stop| async move { o.stop(&a.name).await });
    bus.bind(&orch, |o, _, a: Restart| async move { o.restart(&a.name).await });
    bus.bind(
        &orch,
        |o, _, a: Enable| async move { o.set_enabled(&a.name, true).await },
    );
    bus.bind(
        &orch,
        |o, _, a: Disable| async move { o.set_enabled(&a.name, false).await },
    );
    bus.bind(&orch, |o, _, a: Remove| async move { o.remove(a).await });
    bus.bind(&orch, |o, _, a: Logs| async move { o.logs(a).await });
    bus.bind(&orch, |o, _, a: Status| async move { o.status(a.name).await });
    bus.bind(&orch, |o, _, a: JobGet| async move { o.jobs.get(&a.job) });
    bus.bind(&orch, |o, _, a: ImageList| async move { o.image_list(a).await });
    bus.bind(&orch, |o, _, a: ImageLoad| async move { o.image_load(a).await });
    bus.bind(&orch, |o, _, a: StoreAdd| async move { o.store_add(a).await });
    bus.bind(&orch, |o, _, a: StoreList| async move { o.store_list(a).await });
    bus.bind(&orch, |o, _, a: StoreGet| async move { o.store_get(a).await });
    bus.bind(&orch, |o, _, a: Preview| async move { o.preview(a).await });
    // Before taking commands: a marker found now belongs to a crashed run.
    orch.recover_interrupted_installs().await;
    match core::seed(&bus, &orch.config, orch.instance()).await {
        Ok(seeded) if !seeded.is_empty() => info!(?seeded, "core apps registered"),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "core apps not registered"),
    }
    bus.serve().await?;
    match orch.ensure_swarm().await {
        Ok(()) => {
            info!(service = SERVICE, "service ready");
            // Only on a Swarm manager: before `swarm init` every deploy fails.
            if orch.config.orchestrator.deploy_core_apps {
                orch.deploy_core_apps().await;
            }
        }
        Err(e) => warn!(service = SERVICE, error = %e.message, "service ready, Docker unavailable"),
    }
    reconciler::reconcile_loop(Arc::clone(&orch), shutdown).await;
    bus.shutdown().await;
    info!(service = SERVICE, "service stopped");
    Ok(())
}
