//! The backends behind one interface: each takes the desired state and makes what it
//! owns match it, leaving everything a person made alone.

use std::collections::BTreeMap;

use cubeos_kit::host::{Host, HostCommand};
use serde::Serialize;

use crate::desired::Desired;
use crate::{dnsmasq::Dnsmasq, nginx::Nginx, npm::Npm, pihole::Pihole};

/// The first line of every file this service writes, and the marker on every NPM
/// host it creates: what it may change or delete.
pub const MARKER: &str = "# managed by cubeos: changes here are overwritten";

#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("{0} is unreachable: {1}")]
    Unreachable(&'static str, String),
    #[error("{0} refused our credentials")]
    Auth(&'static str),
    #[error("{0}'s password is sealed and cannot be opened with this box's secret key")]
    Sealed(&'static str),
    #[error("{0} rejected a change: {1}")]
    Rejected(&'static str, String),
    #[error("{0}: {1}")]
    Io(&'static str, String),
    #[error("nginx -t failed, so nginx was not reloaded and keeps its last good configuration: {0}")]
    BadConfig(String),
}

/// What one pass did, and what the backend holds afterwards.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    /// Names a person's own entry holds, which this service leaves alone.
    pub conflicts: Vec<String>,
    /// name -> what the backend serves for it (an address, or `host:port`).
    pub actual: BTreeMap<String, String>,
    /// NPM: name -> proxy host id, for the registry's `fqdns.npm_proxy_id`.
    pub proxy_ids: BTreeMap<String, i64>,
}

impl Outcome {
    pub fn changes(&self) -> usize {
        self.created + self.updated + self.deleted
    }
}

/// Where names resolve.
pub enum Dns {
    None,
    Dnsmasq(Dnsmasq),
    Pihole(Pihole),
}

/// Where names are proxied.
pub enum Proxy {
    None,
    Nginx(Nginx),
    Npm(Npm),
}

impl Dns {
    pub fn name(&self) -> &'static str {
        match self {
            Dns::None => "none",
            Dns::Dnsmasq(_) => "dnsmasq",
            Dns::Pihole(_) => "pihole",
        }
    }

    pub async fn sync(&mut self, want: &Desired) -> Result<Outcome, BackendError> {
        match self {
            Dns::None => Ok(Outcome::default()),
            Dns::Dnsmasq(b) => b.sync(want).await,
            Dns::Pihole(b) => b.sync(want).await,
        }
    }
}

impl Proxy {
    pub fn name(&self) -> &'static str {
        match self {
            Proxy::None => "none",
            Proxy::Nginx(_) => "nginx",
            Proxy::Npm(_) => "npm",
        }
    }

    pub async fn sync(&mut self, want: &Desired) -> Result<Outcome, BackendError> {
        match self {
            Proxy::None => Ok(Outcome::default()),
            Proxy::Nginx(b) => b.sync(want).await,
            Proxy::Npm(b) => b.sync(want).await,
        }
    }
}

/// Runs a configured command (`argv`) on `host`; the error says what failed.
pub async fn run_command(host: &dyn Host, what: &'static str, argv: &[String]) -> Result<(), String> {
    let command = HostCommand::from_argv(argv).ok_or_else(|| format!("no {what} command configured"))?;
    host.run(&command).await.map(|_| ()).map_err(|e| e.to_string())
}
