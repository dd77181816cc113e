//! nginx: one server block per name, each in its own file (`cubeos-<name>.conf`) in a
//! directory this service owns and nginx includes from `http {}`. Files without the
//! marker are a person's and never touched.
//!
//! Every change is followed by the configured test (`nginx -t`) and, only if it
//! passes, the reload. A failing test puts the previous files back, so nginx keeps
//! running — and reloads — its last good configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cubeos_kit::config::NginxConfig;
use cubeos_kit::host::Host;

use crate::backend::{BackendError, MARKER, Outcome, run_command};
use crate::desired::{Desired, Route};
use crate::dnsmasq::write;
use crate::plan::plan;

/// The upgrade map every server block uses; one file, so it is defined once.
const MAP_FILE: &str = "cubeos-00-upgrade.conf";
const PREFIX: &str = "cubeos-";

pub struct Nginx {
    config: NginxConfig,
    /// Runs the test and reload commands.
    host: Arc<dyn Host>,
    /// Files passed the test but nginx has not reloaded them: a failed reload is
    /// retried on the next pass even though the files then match. True at start,
    /// since an earlier run may have stopped in between.
    reload_pending: bool,
}

impl Nginx {
    pub fn new(config: &NginxConfig, host: Arc<dyn Host>) -> Nginx {
        Nginx {
            config: config.clone(),
            host,
            reload_pending: true,
        }
    }

    pub async fn sync(&mut self, want: &Desired) -> Result<Outcome, BackendError> {
        let desired = self.render_all(&want.routes);
        let owned = owned_files(&self.config.conf_dir).await?;
        let changes = plan(&desired, &owned);
        // Once a pass succeeds, nginx serves exactly the desired routes.
        let mut outcome = Outcome {
            actual: want
                .routes
                .iter()
                .map(|(name, r)| (name.clone(), format!("{}:{}", r.host, r.port)))
                .collect(),
            ..Outcome::default()
        };
        if changes.is_empty() && !self.reload_pending {
            return Ok(outcome);
        }
        let dir = &self.config.conf_dir;
        for (file, content) in changes.create.iter().chain(&changes.update) {
            write(&dir.join(file), content).await?;
        }
        for file in &changes.delete {
            let _ = tokio::fs::remove_file(dir.join(file)).await;
        }
        if let Err(why) = run_command(&*self.host, "nginx test", &self.config.test_command).await {
            self.restore(&owned, &desired).await;
            return Err(BackendError::BadConfig(why));
        }
        self.reload_pending = true;
        run_command(&*self.host, "nginx reload", &self.config.reload_command)
            .await
            .map_err(|e| BackendError::Unreachable("nginx", e))?;
        self.reload_pending = false;
        outcome.created = changes.create.iter().filter(|(f, _)| *f != MAP_FILE).count();
        outcome.updated = changes.update.iter().filter(|(f, _)| *f != MAP_FILE).count();
        outcome.deleted = changes.delete.len();
        Ok(outcome)
    }

    /// Puts the files back as they were before a change that failed the test.
    async fn restore(&self, before: &BTreeMap<String, String>, attempted: &BTreeMap<String, String>) {
        let dir = &self.config.conf_dir;
        for file in attempted.keys().filter(|f| !before.contains_key(*f)) {
            let _ = tokio::fs::remove_file(dir.join(file)).await;
        }
        for (file, content) in before {
            if attempted.get(file) != Some(content) {
                let _ = write(&dir.join(file), content).await;
            }
        }
    }

    /// file name -> content, for every name plus the shared upgrade map.
    fn render_all(&self, routes: &BTreeMap<String, Route>) -> BTreeMap<String, String> {
        let mut files: BTreeMap<String, String> = routes
            .iter()
            .map(|(name, route)| (file_name(name), self.server_block(name, route)))
            .collect();
        files.insert(
            MAP_FILE.to_owned(),
            format!(
                "{MARKER}\nmap $http_upgrade $cubeos_connection_upgrade {{\n    default upgrade;\n    '' close;\n}}\n"
            ),
        );
        files
    }

    fn server_block(&self, name: &str, route: &Route) -> String {
        let mut listen = format!("    listen {};\n", self.config.listen);
        if let (true, Some(cert), Some(key)) = (
            route.ssl,
            &self.config.ssl_certificate,
            &self.config.ssl_certificate_key,
        ) {
            listen.push_str(&format!(
                "    listen 443 ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n",
                cert.display(),
                key.display()
            ));
        }
        let websocket = if route.websocket {
            "        proxy_set_header Upgrade $http_upgrade;\n        proxy_set_header Connection $cubeos_connection_upgrade;\n"
        } else {
            ""
        };
        format!(
            "{MARKER}\nserver {{\n{listen}    server_name {name};\n    location / {{\n        proxy_pass http://{}:{};\n        proxy_http_version 1.1;\n{websocket}        proxy_set_header Host $host;\n        proxy_set_header X-Real-IP $remote_addr;\n        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n        proxy_set_header X-Forwarded-Proto $scheme;\n        proxy_read_timeout 1h;\n    }}\n}}\n",
            route.host, route.port
        )
    }
}

fn file_name(name: &str) -> String {
    format!("{PREFIX}{name}.conf")
}

/// The files of this service in `dir`: named `cubeos-*.conf` and starting with the
/// marker.
async fn owned_files(dir: &Path) -> Result<BTreeMap<String, String>, BackendError> {
    let io = |e: std::io::Error| BackendError::Io("nginx", format!("{}: {e}", dir.display()));
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let mut entries = tokio::fs::read_dir(dir).await.map_err(io)?;
    let mut owned = BTreeMap::new();
    while let Some(entry) = entries.next_entry().await.map_err(io)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(PREFIX) && name.ends_with(".conf")) {
            continue;
        }
        let path: PathBuf = entry.path();
        if let Ok(content) = tokio::fs::read_to_string(&path).await
            && content.starts_with(MARKER)
        {
            owned.insert(name, content);
        }
    }
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Network, desired};
    use cubeos_kit::host::{HostError, HostOutput, Recording};

    #[tokio::test]
    async fn a_failed_reload_is_retried_when_the_files_already_match() {
        let dir = tempfile::tempdir().unwrap();
        let config = NginxConfig {
            conf_dir: dir.path().join("conf"),
            listen: "127.0.0.1:8080".into(),
            test_command: vec!["nginx".into(), "-t".into()],
            reload_command: vec!["nginx".into(), "-s".into(), "reload".into()],
            ssl_certificate: None,
            ssl_certificate_key: None,
        };
        std::fs::create_dir_all(&config.conf_dir).unwrap();
        let network = Network {
            domain: "cubeos.cube".into(),
            gateway: "10.42.24.1".parse().unwrap(),
        };
        let want = desired([], &network, "127.0.0.1", 6011);
        // The test passes, the reload fails; then both pass.
        let refused = HostError::Failed {
            command: "nginx -s reload".into(),
            status: "exit status: 1".into(),
            stderr: "signal process failed".into(),
        };
        let host = Arc::new(Recording::answering([Ok(HostOutput::default()), Err(refused)]));
        let mut nginx = Nginx::new(&config, host.clone());
        let failed = nginx.sync(&want).await.unwrap_err();
        assert!(failed.to_string().contains("signal process failed"), "{failed}");

        nginx.sync(&want).await.unwrap();
        assert_eq!(
            host.calls(),
            ["nginx -t", "nginx -s reload", "nginx -t", "nginx -s reload"],
            "the files matched, but the reload was still owed"
        );
        nginx.sync(&want).await.unwrap();
        assert_eq!(host.calls().len(), 4, "nothing owed, nothing run");
    }
}
