//! Core apps: the services every CubeOS box has (Pi-hole, Nginx Proxy Manager, the
//! local image registry, Dozzle, File Browser, Kiwix, WireGuard, Ollama,
//! ChromaDB), with their fixed ports and names.
//! They are seeded into the registry on first start, their compose files written
//! under `<data>/coreapps/<name>/appconfig/`; deploying them is
//! `orchestrator.deploy_core_apps` (off by default: a build machine cannot pull
//! their images).

use std::path::PathBuf;

use cubeos_contract::api::registry::{AppCreate, AppGet, FqdnSpec, PortSpec, Settings, StateGet};
use cubeos_contract::models::{AppSource, AppType};
use cubeos_kit::{BusError, Config, ErrorCode};

use cubeos_compose::{self as compose, Context, Vars};

/// A core app: name, display name, type, and its compose file (`deploy/coreapps`).
pub struct CoreApp {
    pub name: &'static str,
    pub display_name: &'static str,
    pub app_type: AppType,
    pub compose: &'static str,
}

pub const CORE_APPS: &[CoreApp] = &[
    CoreApp {
        name: "pihole",
        display_name: "Pi-hole",
        app_type: AppType::System,
        compose: include_str!("../../../deploy/coreapps/pihole.yml"),
    },
    CoreApp {
        name: "npm",
        display_name: "Nginx Proxy Manager",
        app_type: AppType::System,
        compose: include_str!("../../../deploy/coreapps/npm.yml"),
    },
    CoreApp {
        name: "registry",
        display_name: "Image registry",
        app_type: AppType::System,
        compose: include_str!("../../../deploy/coreapps/registry.yml"),
    },
    CoreApp {
        name: "dozzle",
        display_name: "Dozzle",
        app_type: AppType::Platform,
        compose: include_str!("../../../deploy/coreapps/dozzle.yml"),
    },
    CoreApp {
        name: "filebrowser",
        display_name: "File Browser",
        app_type: AppType::Platform,
        compose: include_str!("../../../deploy/coreapps/filebrowser.yml"),
    },
    CoreApp {
        name: "kiwix",
        display_name: "Kiwix",
        app_type: AppType::Platform,
        compose: include_str!("../../../deploy/coreapps/kiwix.yml"),
    },
    CoreApp {
        name: "wireguard",
        display_name: "WireGuard",
        app_type: AppType::Network,
        compose: include_str!("../../../deploy/coreapps/wireguard.yml"),
    },
    CoreApp {
        name: "ollama",
        display_name: "Ollama",
        app_type: AppType::Ai,
        compose: include_str!("../../../deploy/coreapps/ollama.yml"),
    },
    CoreApp {
        name: "chromadb",
        display_name: "ChromaDB",
        app_type: AppType::Ai,
        compose: include_str!("../../../deploy/coreapps/chromadb.yml"),
    },
];

/// `<data>/coreapps/<name>`.
pub fn core_dir(config: &Config, name: &str) -> PathBuf {
    config.data_dir.join("coreapps").join(name)
}

/// The translation of a core app: trusted (forced), its ports fixed as written.
pub fn translate(
    config: &Config,
    instance: &str,
    app: &CoreApp,
) -> Result<compose::Translation, compose::ComposeError> {
    let mut ctx = Context::for_app(config, instance, app.name, &Vars::new());
    ctx.app_data = core_dir(config, app.name).join("appdata");
    ctx.force = true;
    compose::translate(app.compose, &ctx)
}

/// The system's domain, under which every app is named.
pub async fn domain(bus: &cubeos_kit::Bus) -> Result<String, BusError> {
    let reply = bus
        .call(&StateGet {
            key: Some("domain".into()),
        })
        .await?;
    Ok(match reply {
        Settings::One(setting) => setting.value,
        Settings::All(_) => "cubeos.cube".to_owned(),
    })
}

/// Seeds the registry with the core apps it does not have yet; returns their names.
pub async fn seed(bus: &cubeos_kit::Bus, config: &Config, instance: &str) -> Result<Vec<&'static str>, BusError> {
    let domain = domain(bus).await?;
    let mut seeded = Vec::new();
    for app in CORE_APPS {
        match bus.call(&AppGet { name: app.name.into() }).await {
            Ok(_) => continue,
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
        let t =
            translate(config, instance, app).map_err(|e| BusError::internal(format!("core app {}: {e}", app.name)))?;
        let dir = core_dir(config, app.name);
        let compose_path = dir.join("appconfig").join("docker-compose.yml");
        std::fs::create_dir_all(dir.join("appconfig")).map_err(|e| BusError::internal(e.to_string()))?;
        std::fs::write(&compose_path, app.compose).map_err(|e| BusError::internal(e.to_string()))?;
        let ports: Vec<_> = t
            .ports
            .iter()
            .filter_map(|p| {
                p.published.map(|port| PortSpec {
                    port: i64::from(port),
                    protocol: Some(p.protocol),
                    description: Some(p.description.clone()),
                    is_primary: None,
                })
            })
            .collect();
        let web = t.web_port().unwrap_or(80);
        let record = AppCreate {
            name: app.name.into(),
            display_name: Some(app.display_name.into()),
            app_type: Some(app.app_type),
            source: Some(AppSource::Cubeos),
            category: Some("infrastructure".into()),
            version: Some(t.app.version.clone()),
            compose_path: Some(compose_path.display().to_string()),
            data_path: Some(dir.join("appdata").display().to_string()),
            ports,
            fqdns: vec![FqdnSpec {
                fqdn: format!("{}.{domain}", app.name),
                backend_port: i64::from(web),
                ssl_enabled: None,
            }],
            ..AppCreate::default()
        };
        bus.call(&record).await?;
        seeded.push(app.name);
    }
    Ok(seeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_app_translates_with_its_fixed_ports() {
        let config = Config::default();
        for app in CORE_APPS {
            let t = translate(&config, "test", app).unwrap_or_else(|e| panic!("{}: {e}", app.name));
            assert!(
                t.ports.iter().all(|p| p.published.is_some()),
                "{}: every port is fixed",
                app.name
            );
            assert!(
                !t.app.version.is_empty() && t.app.version != "latest",
                "{}: pinned image",
                app.name
            );
        }
        let pihole = translate(&config, "test", &CORE_APPS[0]).unwrap();
        let published: Vec<u16> = pihole.ports.iter().filter_map(|p| p.published).collect();
        assert_eq!(published, [6001, 53, 53]);
    }
}
