//! Compose and CasaOS app files -> an app record plus the Swarm objects that
//! `docker stack deploy` would create, with an honest report of what Swarm cannot
//! honour.
//!
//! Pipeline: [`yaml`] (size limit, YAML with merge keys, interpolation of every
//! string with [`interpolate`]) -> per-key translation ([`swarm`], with the value
//! syntaxes in [`syntax`] and host paths in [`paths`]) -> metadata ([`casaos`]) ->
//! [`Translation`]. Pure code: no Docker, no files.
//!
//! Why not a typed compose crate: `docker-compose-types` 0.24 rejects valid Swarm
//! files, and `compose_spec` 0.3 parses real files only once interpolated with
//! merge keys applied — and both drop what they do not model, while the report
//! must see every key. Walking the interpolated tree key by key is what lets every
//! key end up either translated or in the report.

pub mod casaos;
pub mod interpolate;
pub mod paths;
pub mod report;
pub mod swarm;
pub mod syntax;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ConfigSpec, NetworkCreateRequest, ServiceSpec};
use cubeos_contract::api::registry::AppCreate;
use cubeos_contract::models::{AppSource, Protocol};
use cubeos_contract::validate;
pub use cubeos_kit::config::PublishMode;
use serde::Serialize;
use serde_json::Value;

pub use interpolate::{InterpolationError, Vars};
pub use report::{Outcome, Report, Row};

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("the compose file is {bytes} bytes; the limit is {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("the compose file is not valid YAML: {0}")]
    Yaml(String),
    #[error("{path}: {source}")]
    Interpolation { path: String, source: InterpolationError },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("refused without force: {}", .0.join("; "))]
    Refused(Vec<String>),
}

/// A container port of one service: the key of the allocation map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PortKey {
    pub service: String,
    pub target: u16,
    pub protocol: Protocol,
}

/// What the translation is done for.
#[derive(Debug, Clone)]
pub struct Context {
    /// The stack name: the app's name and CasaOS's `AppID`.
    pub name: String,
    /// Variables for interpolation (`AppID`, `TZ`, `PUID`, `PGID`, overrides).
    pub vars: Vars,
    /// Where `/DATA/AppData/<AppID>` goes.
    pub app_data: PathBuf,
    /// Where the rest of `/DATA` goes.
    pub shared_data: PathBuf,
    pub publish_mode: PublishMode,
    /// The port allocator's choices, replacing the file's published ports.
    pub allocations: BTreeMap<PortKey, u16>,
    /// Deploy despite `unsupported` rows (privileged gets all capabilities).
    pub force: bool,
    /// The installation's id, labelled on every object (`cubeos.instance`).
    pub instance: String,
}

impl Context {
    /// A context for app `name` with the CasaOS variables set; `overrides` win.
    pub fn new(name: &str, app_data: PathBuf, shared_data: PathBuf, system: &SystemVars, overrides: &Vars) -> Self {
        let mut vars: Vars = [
            ("AppID", name.to_owned()),
            ("TZ", system.timezone.clone()),
            ("PUID", system.puid.to_string()),
            ("PGID", system.pgid.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        vars.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        Context {
            name: name.to_owned(),
            vars,
            app_data,
            shared_data,
            publish_mode: PublishMode::Host,
            allocations: BTreeMap::new(),
            force: false,
            instance: "local".to_owned(),
        }
    }
}

/// Values CubeOS supplies to every app.
#[derive(Debug, Clone)]
pub struct SystemVars {
    pub timezone: String,
    pub puid: u32,
    pub pgid: u32,
}

impl SystemVars {
    pub fn from_config(config: &cubeos_kit::Config) -> Self {
        SystemVars {
            timezone: config.timezone(),
            puid: config.apps.puid,
            pgid: config.apps.pgid,
        }
    }
}

impl Context {
    /// The context CubeOS installation `instance` installs app `name` in: its data
    /// path, the shared folder and the publish mode from `config`.
    pub fn for_app(config: &cubeos_kit::Config, instance: &str, name: &str, overrides: &Vars) -> Self {
        let mut ctx = Context::new(
            name,
            config.app_dir(name).join("appdata"),
            config.shared_dir(),
            &SystemVars::from_config(config),
            overrides,
        );
        ctx.publish_mode = config.apps.publish_mode;
        ctx.instance = instance.to_owned();
        ctx
    }
}

/// A published (or host-network) port of the stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    pub service: String,
    pub target: u16,
    /// After allocation; `None` when neither the file nor the allocator chose one.
    pub published: Option<u16>,
    /// What the file asked for.
    pub file_published: Option<u16>,
    pub protocol: Protocol,
    /// The service uses the host's network: the port is the app's own and cannot move.
    pub host_network: bool,
    pub description: String,
}

/// The app record fields, named as `app.create` takes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppFields {
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub category: String,
    pub source: AppSource,
    pub store_id: Option<String>,
    pub icon_url: String,
    pub version: String,
    pub homepage: String,
}

impl AppFields {
    /// The `app.create` command registering this app, its files at the given paths.
    pub fn to_new_app(&self, compose_path: String, data_path: String) -> AppCreate {
        AppCreate {
            name: self.name.clone(),
            display_name: Some(self.display_name.clone()),
            description: Some(self.description.clone()),
            category: Some(self.category.clone()),
            source: Some(self.source),
            store_id: self.store_id.clone(),
            icon_url: Some(self.icon_url.clone()),
            version: Some(self.version.clone()),
            homepage: Some(self.homepage.clone()),
            compose_path: Some(compose_path),
            data_path: Some(data_path),
            ..AppCreate::default()
        }
    }
}

/// Where the web UI is, after allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebUi {
    pub scheme: String,
    pub port: u16,
    pub path: String,
}

/// Everything a deploy needs, and everything a person should know first.
#[derive(Debug, Clone, Serialize)]
pub struct Translation {
    pub app: AppFields,
    pub metadata: casaos::Metadata,
    pub web_ui: Option<WebUi>,
    pub services: Vec<ServiceSpec>,
    pub networks: Vec<NetworkCreateRequest>,
    pub volumes: Vec<String>,
    /// Swarm configs from inline `content`; services refer to them by name, and the
    /// deployer fills in the ids Docker assigns.
    pub configs: Vec<ConfigSpec>,
    /// Host directories to create before deploying (every bind source CubeOS owns).
    pub bind_dirs: Vec<PathBuf>,
    pub ports: Vec<PublishedPort>,
    pub report: Vec<Row>,
    /// Why it is refused without force (empty: deployable).
    pub refusals: Vec<String>,
}

impl Translation {
    /// The port the app's name proxies to: its web UI's, else its first published.
    pub fn web_port(&self) -> Option<u16> {
        self.web_ui
            .as_ref()
            .map(|w| w.port)
            .or_else(|| self.ports.iter().find_map(|p| p.published))
    }

    pub fn deployable(&self) -> bool {
        self.refusals.is_empty()
    }

    /// `Ok` when deployable, or forced.
    pub fn check(&self, force: bool) -> Result<(), ComposeError> {
        if self.deployable() || force {
            Ok(())
        } else {
            Err(ComposeError::Refused(self.refusals.clone()))
        }
    }
}

/// Compose service names: what `docker stack deploy` accepts, and no path tricks.
fn check_service_name(name: &str) -> Result<(), ComposeError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(ComposeError::Invalid {
            path: format!("services.{}", validate::truncate(name, 40)),
            reason: "service names are letters, digits, '_', '-', '.', starting with a letter or digit".into(),
        })
    }
}

/// The name a compose file gives its app: `name:` if valid, else `None`.
pub fn declared_name(text: &str) -> Option<String> {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).ok()?;
    let name = yaml.get("name")?.as_str()?.to_ascii_lowercase();
    validate::name("name", &name).ok().map(|_| name)
}

/// The app name a compose file read from `file` implies when none is given: its
/// `name:`, else the file's name (`Navidrome.yml` -> `navidrome`).
pub fn default_name(text: &str, file: &Path) -> String {
    declared_name(text).unwrap_or_else(|| name_from_file(file))
}

/// A file's name as an app name: lower case, other characters as `-`, at most 63.
pub fn name_from_file(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "app".to_owned()
    } else {
        name.chars().take(63).collect()
    }
}

/// Translates a compose file for `ctx`.
pub fn translate(text: &str, ctx: &Context) -> Result<Translation, ComposeError> {
    validate::name("name", &ctx.name).map_err(|e| ComposeError::Invalid {
        path: "name".into(),
        reason: e.reason,
    })?;
    let tree = yaml::load(text, &ctx.vars)?;
    let top = tree.as_object().cloned().unwrap_or_default();
    let mut report = Report::default();
    let stack = &ctx.name;

    let services = match top.get("services") {
        Some(Value::Object(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ComposeError::Invalid {
                path: "services".into(),
                reason: "at least one service is needed".into(),
            });
        }
    };
    for name in services.keys() {
        check_service_name(name)?;
    }

    // Declared networks and volumes: compose name -> Swarm name.
    let mut networks = vec![network(&format!("{stack}_default"), ctx)];
    let mut declared_networks = BTreeMap::from([("default".to_owned(), format!("{stack}_default"))]);
    for (name, def) in top.get("networks").and_then(Value::as_object).into_iter().flatten() {
        let def = def.as_object().cloned().unwrap_or_default();
        let explicit = def.get("name").and_then(syntax::scalar);
        if def
            .get("external")
            .is_some_and(|e| e == &Value::Bool(true) || e.get("name").is_some())
        {
            let ext = explicit.unwrap_or_else(|| name.clone());
            report.mapped(
                "",
                &format!("networks.{name}"),
                format!("external network '{ext}' must exist"),
            );
            declared_networks.insert(name.clone(), ext);
            continue;
        }
        let full = explicit.unwrap_or_else(|| format!("{stack}_{name}"));
        if name != "default" {
            networks.push(network(&full, ctx));
        }
        declared_networks.insert(name.clone(), full);
    }
    let mut declared_volumes = BTreeMap::new();
    for (name, def) in top.get("volumes").and_then(Value::as_object).into_iter().flatten() {
        let explicit = def.get("name").and_then(syntax::scalar);
        let external = def.get("external").is_some_and(|e| e == &Value::Bool(true));
        let full = match (explicit, external) {
            (Some(n), _) => n,
            (None, true) => name.clone(),
            (None, false) => format!("{stack}_{name}"),
        };
        declared_volumes.insert(name.clone(), full);
    }
    let mut configs = Vec::new();
    let mut declared_configs = BTreeMap::new();
    for (name, def) in top.get("configs").and_then(Value::as_object).into_iter().flatten() {
        match def.get("content").and_then(syntax::scalar) {
            Some(content) => {
                let full = format!("{stack}_{name}");
                configs.push(config(&full, &content, ctx));
                declared_configs.insert(name.clone(), full);
            }
            None => report.unsupported(
                "",
                &format!("configs.{name}"),
                "only inline 'content' configs are supported; CubeOS receives no other files",
            ),
        }
    }
    for key in top.keys() {
        match key.as_str() {
            "services" | "networks" | "volumes" | "configs" | "name" | "x-casaos" => {}
            "version" => report.ignored("", key, "obsolete; the file is read as the Compose specification"),
            "secrets" => report.unsupported("", key, "Swarm secrets from files are not supported"),
            k if k.starts_with("x-") => {}
            k => report.ignored("", k, "not a compose key CubeOS knows"),
        }
    }

    let mut specs = Vec::new();
    let mut ports = Vec::new();
    let mut bind_dirs = Vec::new();
    let mut volumes = Vec::new();
    let mut used_networks = Vec::new();
    for (name, def) in &services {
        let def = def.as_object().ok_or_else(|| ComposeError::Invalid {
            path: format!("services.{name}"),
            reason: "a service is a mapping".into(),
        })?;
        let declared = swarm::Declared {
            networks: &declared_networks,
            volumes: &declared_volumes,
            configs: &declared_configs,
        };
        let (spec, extras) = swarm::service(ctx, name, def, &declared, &mut report)?;
        specs.push(spec);
        ports.extend(extras.ports);
        for dir in extras.bind_dirs {
            if !bind_dirs.contains(&dir) {
                bind_dirs.push(dir);
            }
        }
        for v in extras.named_volumes {
            if !volumes.contains(&v) {
                volumes.push(v);
            }
        }
        used_networks.extend(extras.networks);
    }
    // Only networks some service uses are created (the default one may be unused).
    networks.retain(|n| used_networks.contains(&n.name));

    let metadata = casaos::metadata(&top, &services, stack);
    for p in &mut ports {
        p.description = metadata
            .port_descriptions
            .get(&format!("{}:{}", p.service, p.target))
            .cloned()
            .unwrap_or_default();
    }
    let web_ui = web_ui(&metadata, &ports);
    let has_casaos = top.contains_key("x-casaos");
    let app = AppFields {
        name: stack.clone(),
        display_name: metadata.display_name.clone(),
        description: if metadata.description.is_empty() {
            metadata.tagline.clone()
        } else {
            metadata.description.clone()
        },
        category: metadata.category.clone(),
        source: if has_casaos {
            AppSource::Casaos
        } else {
            AppSource::Custom
        },
        store_id: metadata.store_id.clone(),
        icon_url: metadata.icon_url.clone(),
        version: metadata.version.clone(),
        homepage: metadata.homepage.clone(),
    };
    let refusals = report.refusals();
    Ok(Translation {
        app,
        metadata,
        web_ui,
        services: specs,
        networks,
        volumes,
        configs,
        bind_dirs,
        ports,
        report: report.rows,
        refusals,
    })
}

fn network(name: &str, ctx: &Context) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: name.to_owned(),
        driver: Some("overlay".into()),
        attachable: Some(true),
        labels: Some(swarm::ownership_labels(&ctx.name, &ctx.instance)),
        ..Default::default()
    }
}

fn config(name: &str, content: &str, ctx: &Context) -> ConfigSpec {
    use base64::Engine as _;
    ConfigSpec {
        name: Some(name.to_owned()),
        data: Some(base64::engine::general_purpose::STANDARD.encode(content)),
        labels: Some(swarm::ownership_labels(&ctx.name, &ctx.instance)),
        ..Default::default()
    }
}

/// The web UI: CasaOS's `port_map` names a published port of the main service;
/// follow it through allocation. Without one, the main service's first TCP port.
fn web_ui(meta: &casaos::Metadata, ports: &[PublishedPort]) -> Option<WebUi> {
    let main: Vec<&PublishedPort> = ports
        .iter()
        .filter(|p| p.service == meta.main_service && p.protocol == Protocol::Tcp)
        .collect();
    let hint = meta.web_ui.clone();
    let chosen = hint
        .as_ref()
        .and_then(|h| h.port)
        .and_then(|want| {
            main.iter()
                .find(|p| p.file_published == Some(want) || (p.file_published.is_none() && p.target == want))
        })
        .or_else(|| main.first())?;
    Some(WebUi {
        scheme: hint.as_ref().map(|h| h.scheme.clone()).unwrap_or_else(|| "http".into()),
        port: chosen.published?,
        path: hint.map(|h| h.path).unwrap_or_else(|| "/".into()),
    })
}

/// The message that refuses an install over missing images.
pub fn missing_images(missing: &[&str]) -> String {
    let (what, are) = if missing.len() == 1 {
        ("image", "is")
    } else {
        ("images", "are")
    };
    format!(
        "{what} {} {are} not on this box, and an offline box cannot pull: bring {} with \
         `cubeos image load <file.tar>` (a `docker save` of it), then install again",
        missing.join(", "),
        if missing.len() == 1 { "it" } else { "them" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_every_image_and_the_way_to_bring_it() {
        let one = missing_images(&["lscr.io/linuxserver/navidrome:0.53.3"]);
        assert!(
            one.contains("image lscr.io/linuxserver/navidrome:0.53.3 is not on this box"),
            "{one}"
        );
        assert!(one.contains("cubeos image load <file.tar>"), "{one}");
        let two = missing_images(&["a:1", "b:2"]);
        assert!(two.contains("images a:1, b:2 are not on this box"), "{two}");
    }
}
