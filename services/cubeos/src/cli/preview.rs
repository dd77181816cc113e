//! `cubeos app preview <file|->`: translate a compose file and show the app, its
//! services, ports, volumes and the compatibility report. Exit 0 when it can be
//! deployed; otherwise non-zero with the reasons.
//!
//! It needs no running system. When CubeOS runs here (or this user is signed in),
//! it also says which images the box lacks (an install would be refused) and which
//! of the file's host ports are taken (an install would give the app another).

use std::collections::BTreeMap;

use cubeos_compose::{self as compose, Context, Outcome, Translation, Vars};
use cubeos_contract::api::orchestrator::ImageList;
use cubeos_contract::api::port_allocator::{Check, Holder, PortCheck};
use cubeos_kit::BusError;
use serde::Serialize;

use super::compose_file::ComposeFile;
use super::{Cli, Client, SavedLogin};
use crate::output;

/// What the running system says of the file.
#[derive(Default, Serialize)]
struct Live {
    /// Images the box does not have.
    missing_images: Vec<String>,
    /// A host port the file asks for -> who holds it.
    #[serde(rename = "taken_ports")]
    taken: BTreeMap<u16, String>,
}

pub async fn run(cli: &Cli, file: &str, name: Option<String>, json: bool, force: bool) -> anyhow::Result<()> {
    let config = &cli.config;
    let ComposeFile { text, name } = ComposeFile::read(file, name)?;
    // The labels show this box's id; a box not set up yet shows a placeholder.
    let instance = config.instance_id().unwrap_or_else(|_| "local".into());
    let mut ctx = Context::for_app(config, &instance, &name, &Vars::new());
    ctx.force = force;
    let t = compose::translate(&text, &ctx).map_err(|e| BusError::bad_request(e.to_string()))?;
    let live = live_checks(cli, &t).await;
    if json {
        output::json(&PreviewJson {
            translation: &t,
            live: live.as_ref(),
        })?;
    } else {
        print_human(&t, live.as_ref());
    }
    t.check(force).map_err(|e| BusError::bad_request(e.to_string()))?;
    if let Some(live) = live.filter(|l| !l.missing_images.is_empty()) {
        let missing: Vec<&str> = live.missing_images.iter().map(String::as_str).collect();
        return Err(BusError::not_found(compose::missing_images(&missing)).into());
    }
    Ok(())
}

/// `app preview --json`: the translation and, when a system answered, what it said.
#[derive(Serialize)]
struct PreviewJson<'a> {
    #[serde(flatten)]
    translation: &'a Translation,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    live: Option<&'a Live>,
}

/// Asks the running system about the file's images and host ports; `None` when
/// no system answers here (a preview needs none).
async fn live_checks(cli: &Cli, t: &Translation) -> Option<Live> {
    let reachable =
        cubeos_broker::Credentials::load(&cli.config.credentials_path()).is_ok() || SavedLogin::load().is_some();
    if !reachable {
        return None;
    }
    let client = Client::connect(cli).await.ok()?;
    let mut live = Live::default();
    let images: Vec<String> = t
        .services
        .iter()
        .filter_map(|s| s.task_template.as_ref()?.container_spec.as_ref()?.image.clone())
        .collect();
    let listed = client.call(&ImageList { images: Some(images) }).await.ok();
    for row in listed.into_iter().flat_map(|l| l.images) {
        if !row.state.present {
            live.missing_images.push(row.state.image);
        }
    }
    for p in t.ports.iter().filter(|p| !p.host_network) {
        let Some(port) = p.file_published else { continue };
        let args = Check {
            port: i64::from(port),
            protocol: Some(p.protocol),
        };
        if let Ok(reply) = client.call(&args).await
            && !reply.free
        {
            live.taken.insert(port, holder(&reply));
        }
    }
    client.shutdown().await;
    Some(live)
}

/// Who holds a port, from the allocator's `check`.
fn holder(reply: &PortCheck) -> String {
    match reply.held_by.first() {
        Some(Holder::App { app }) => format!("app {app}"),
        Some(Holder::Swarm { service }) => format!("Swarm service {service}"),
        Some(Holder::Socket { process, .. }) => format!("a process ({})", process.as_deref().unwrap_or("not visible")),
        None if reply.reserved => "reserved for host services".into(),
        None => "in use".into(),
    }
}

fn print_human(t: &Translation, live: Option<&Live>) {
    let a = &t.app;
    let taken = |port: u16| live.and_then(|l| l.taken.get(&port));
    let web = t
        .web_ui
        .as_ref()
        .map(|w| match taken(w.port) {
            Some(who) => format!(
                "{}://<box>:<port>{} ({} is taken by {who}: the install gives the app another port)",
                w.scheme, w.path, w.port
            ),
            None => format!("{}://<box>:{}{}", w.scheme, w.port, w.path),
        })
        .unwrap_or_default();
    let rows = vec![
        vec!["name".into(), a.name.clone()],
        vec!["display name".into(), a.display_name.clone()],
        vec!["description".into(), output::shorten(&a.description, 100)],
        vec!["category".into(), a.category.clone()],
        vec!["version".into(), a.version.clone()],
        vec!["source".into(), a.source.as_str().to_owned()],
        vec!["store id".into(), a.store_id.clone().unwrap_or_default()],
        vec!["developer".into(), t.metadata.developer.clone()],
        vec!["architectures".into(), t.metadata.architectures.join(", ")],
        vec!["homepage".into(), a.homepage.clone()],
        vec!["web ui".into(), web],
    ];
    output::table(&["APP", ""], &rows);

    output::line("");
    let rows: Vec<Vec<String>> = t
        .services
        .iter()
        .map(|s| {
            let c = s.task_template.as_ref().and_then(|t| t.container_spec.as_ref());
            let mounts = c
                .and_then(|c| c.mounts.as_ref())
                .map(|m| {
                    m.iter()
                        .map(|m| {
                            format!(
                                "{}:{}",
                                m.source.as_deref().unwrap_or("(tmp)"),
                                m.target.as_deref().unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            vec![
                s.name.clone().unwrap_or_default(),
                c.and_then(|c| c.image.clone()).unwrap_or_default(),
                mounts,
            ]
        })
        .collect();
    output::table(&["SERVICE", "IMAGE", "MOUNTS"], &rows);

    output::line("");
    let rows: Vec<Vec<String>> = t
        .ports
        .iter()
        .map(|p| {
            vec![
                p.service.clone(),
                format!("{}/{}", p.target, p.protocol),
                match p.published {
                    Some(x) => match taken(x) {
                        Some(who) => format!("{x} (taken by {who}: another at install)"),
                        None => x.to_string(),
                    },
                    None => "(allocated at install)".into(),
                },
                if p.host_network {
                    "host network".into()
                } else {
                    output::shorten(&p.description, 60)
                },
            ]
        })
        .collect();
    output::table(&["SERVICE", "CONTAINER", "PUBLISHED", "DESCRIPTION"], &rows);
    if !t.volumes.is_empty() {
        output::line(&format!("\nvolumes: {}", t.volumes.join(", ")));
    }

    output::line("");
    let rows: Vec<Vec<String>> = t
        .report
        .iter()
        .map(|r| {
            let outcome = match r.outcome {
                Outcome::Mapped => "mapped",
                Outcome::Ignored => "ignored",
                Outcome::Unsupported => "UNSUPPORTED",
            };
            vec![r.service.clone(), r.key.clone(), outcome.into(), r.reason.clone()]
        })
        .collect();
    output::table(&["SERVICE", "KEY", "OUTCOME", "REASON"], &rows);
    output::line("");
    match live {
        Some(l) if !l.missing_images.is_empty() => output::line(&format!(
            "images missing on this box: {} (load them with `cubeos image load <file.tar>`)",
            l.missing_images.join(", ")
        )),
        Some(_) => output::line("images: all on this box"),
        None => output::line("images: not checked (CubeOS is not running here)"),
    }
    if t.deployable() && live.is_none_or(|l| l.missing_images.is_empty()) {
        output::line("deployable");
    }
}
