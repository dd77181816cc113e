//! `preview`: what installing a compose file would do — its services, ports, the
//! environment a person may set, the compatibility report, the images the box
//! lacks — for pasted text, a store app or an installed app. Nothing is changed.

use std::path::Path;

use cubeos_compose::{self as compose, Context, Outcome, Translation, Vars};
use cubeos_contract::api::orchestrator::ImageState;
use cubeos_contract::api::store::{AppPreview, CompatRow, EnvField, Preview, PreviewPort};
use cubeos_contract::validate;
use cubeos_kit::BusError;

use crate::images;
use crate::install::read_compose_file;
use crate::service::{Orchestrator, images_of};
use crate::store;

impl Orchestrator {
    /// `preview`: translates exactly one of a compose text, a store app's file or an
    /// installed app's file, and checks its images.
    pub async fn preview(&self, args: Preview) -> Result<AppPreview, BusError> {
        // An installed app's file may hold real passwords in its env: its preview
        // (open to readonly users) is the report, without the values.
        let installed = args.app.is_some();
        let (text, name) = match (args.compose, args.store, args.app) {
            (Some(text), None, None) => {
                let name = match args.name {
                    Some(name) => name,
                    None => compose::declared_name(&text)
                        .ok_or_else(|| BusError::bad_request("name: the file has no 'name:', give one"))?,
                };
                (text, name)
            }
            (None, Some(id), None) => {
                let stored = store::read_app(&self.config, &id)?;
                (stored.compose, args.name.unwrap_or(stored.name))
            }
            // An installed app keeps its name: `name` is for new installs.
            (None, None, Some(app)) => {
                let record = self.require_app(&app).await?;
                if record.app.compose_path.is_empty() {
                    return Err(BusError::not_found(format!("app '{app}' has no compose file")));
                }
                (read_compose_file(Path::new(&record.app.compose_path))?, app)
            }
            _ => {
                return Err(BusError::bad_request(
                    "give exactly one of 'compose', 'store' and 'app'",
                ));
            }
        };
        validate::name("name", &name)?;
        let ctx = Context::for_app(&self.config, &self.instance, &name, &Vars::new());
        // Parsing up to a MiB of YAML is CPU work: off the runtime the gate shares.
        let t = tokio::task::spawn_blocking(move || compose::translate(&text, &ctx))
            .await
            .map_err(|e| BusError::internal(format!("preview: {e}")))?
            .map_err(|e| BusError::bad_request(e.to_string()))?;
        let docker = self.docker().await?;
        let images = images::check(
            &docker,
            &self.config.orchestrator.local_registry,
            &images_of(&t.services),
        )
        .await;
        let mut preview = app_preview(&name, &t, images);
        if installed {
            preview.env.clear();
        }
        Ok(preview)
    }
}

/// The compose service a Swarm service of stack `stack` is (`navidrome_web` -> `web`).
fn compose_service<'a>(stack: &str, spec: &'a bollard::models::ServiceSpec) -> &'a str {
    let full = spec.name.as_deref().unwrap_or_default();
    full.strip_prefix(stack)
        .and_then(|rest| rest.strip_prefix('_'))
        .unwrap_or(full)
}

/// Every environment variable the file's services set, each once (the first
/// service's value; a description from any service that has one).
fn env_fields(stack: &str, t: &Translation) -> Vec<EnvField> {
    let mut fields: Vec<EnvField> = Vec::new();
    for spec in &t.services {
        let service = compose_service(stack, spec);
        let env = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.env.as_ref());
        for pair in env.into_iter().flatten() {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let description = t
                .metadata
                .env_descriptions
                .get(&format!("{service}:{name}"))
                .cloned()
                .unwrap_or_default();
            match fields.iter_mut().find(|f| f.name == name) {
                Some(field) if field.description.is_empty() => field.description = description,
                Some(_) => {}
                None => fields.push(EnvField {
                    name: name.to_owned(),
                    default: value.to_owned(),
                    description,
                }),
            }
        }
    }
    fields
}

/// The preview of app `name`'s translated file, with its images' presence.
pub fn app_preview(name: &str, t: &Translation, images: Vec<ImageState>) -> AppPreview {
    let missing: Vec<&str> = images.iter().filter(|i| !i.present).map(|i| i.image.as_str()).collect();
    let image_hint = (!missing.is_empty()).then(|| compose::missing_images(&missing));
    AppPreview {
        name: name.to_owned(),
        title: t.app.display_name.clone(),
        description: t.app.description.clone(),
        category: t.app.category.clone(),
        services: t.services.iter().map(|s| compose_service(name, s).to_owned()).collect(),
        ports: t
            .ports
            .iter()
            .map(|p| PreviewPort {
                service: p.service.clone(),
                target: p.target,
                published: p.file_published,
                protocol: p.protocol.as_str().to_owned(),
                description: p.description.clone(),
            })
            .collect(),
        env: env_fields(name, t),
        report: t
            .report
            .iter()
            .map(|r| CompatRow {
                service: r.service.clone(),
                key: r.key.clone(),
                outcome: match r.outcome {
                    Outcome::Mapped => "mapped",
                    Outcome::Ignored => "ignored",
                    Outcome::Unsupported => "unsupported",
                }
                .to_owned(),
                reason: r.reason.clone(),
            })
            .collect(),
        refusals: t.refusals.clone(),
        images,
        image_hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cubeos_contract::api::orchestrator::Location;

    const FILE: &str = "name: navidrome
services:
  navidrome:
    image: deluan/navidrome:0.61.2
    ports: ['4533:4533']
    environment:
      ND_LOGLEVEL: info
      TZ: $TZ
    privileged: true
    x-casaos:
      envs:
        - container: ND_LOGLEVEL
          description:
            en_US: Log level.
  helper:
    image: busybox
    environment: ['ND_LOGLEVEL=debug', 'EXTRA=1']
x-casaos:
  title:
    en_us: Navidrome
  category: Media
";

    #[test]
    fn a_preview_lists_services_ports_env_report_and_missing_images() {
        let mut config = cubeos_kit::Config::default();
        config.apps.timezone = "Europe/Berlin".into();
        let ctx = Context::for_app(&config, "test", "navidrome", &Vars::new());
        let t = compose::translate(FILE, &ctx).unwrap();
        let images = vec![
            ImageState {
                image: "deluan/navidrome:0.61.2".into(),
                present: false,
                location: None,
                size: None,
            },
            ImageState {
                image: "busybox".into(),
                present: true,
                location: Some(Location::Node),
                size: Some(1),
            },
        ];
        let p = app_preview("navidrome", &t, images);
        assert_eq!(p.title, "Navidrome");
        assert_eq!(p.category, "media");
        assert_eq!(p.services, ["helper", "navidrome"]);
        assert_eq!(p.ports.len(), 1);
        assert_eq!((p.ports[0].target, p.ports[0].published), (4533, Some(4533)));
        assert_eq!(p.ports[0].protocol, "tcp");
        let env: Vec<(&str, &str, &str)> = p
            .env
            .iter()
            .map(|f| (f.name.as_str(), f.default.as_str(), f.description.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                // The first service's value, the description of the one that has it.
                ("ND_LOGLEVEL", "debug", "Log level."),
                ("EXTRA", "1", ""),
                ("TZ", "Europe/Berlin", "")
            ]
        );
        assert!(
            p.report
                .iter()
                .any(|r| r.key == "privileged" && r.outcome == "unsupported"),
            "{:?}",
            p.report
        );
        assert!(!p.refusals.is_empty());
        let hint = p.image_hint.unwrap();
        assert!(
            hint.contains("deluan/navidrome:0.61.2") && !hint.contains("busybox"),
            "{hint}"
        );
    }
}
