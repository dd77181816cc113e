//! `cubeos app preview <file|->`: translate a compose file and show the app, its
//! services, ports, volumes and the compatibility report. Exit 0 when it can be
//! deployed; otherwise non-zero with the reasons.

use anyhow::bail;
use cubeos_orchestrator::compose::{self, Context, Outcome, Translation, Vars};
use cubeos_shared::Config;

use super::compose_file::ComposeFile;
use crate::output;

pub fn run(config: &Config, file: &str, name: Option<String>, json: bool, force: bool) -> anyhow::Result<()> {
    let ComposeFile { text, name } = ComposeFile::read(file, name)?;
    // The labels show this box's id; a box not set up yet shows a placeholder.
    let instance = config.instance_id().unwrap_or_else(|_| "local".into());
    let mut ctx = Context::for_app(config, &instance, &name, &Vars::new());
    ctx.force = force;
    let t = compose::translate(&text, &ctx)?;
    if json {
        output::json(&t)?;
    } else {
        print_human(&t);
    }
    if let Err(e) = t.check(force) {
        bail!("{e}");
    }
    Ok(())
}

fn print_human(t: &Translation) {
    let a = &t.app;
    let web = t
        .web_ui
        .as_ref()
        .map(|w| format!("{}://<box>:{}{}", w.scheme, w.port, w.path))
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
                p.published
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "(allocated at install)".into()),
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
    if t.deployable() {
        output::line("deployable");
    }
}
