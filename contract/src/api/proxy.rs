//! The DNS / reverse-proxy service's commands and `cubeos/state/proxy`
//! ([`ProxyStatus`]).

use serde::{Deserialize, Serialize};

use super::{commands, no_args};
use crate::topics::service::PROXY;

commands! { PROXY;
    DnsList = "dns.list", Readonly => Entries;
    ProxyList = "proxy.list", Readonly => Entries;
    Sync = "sync", Admin => ProxyStatus;
}

no_args! { DnsList, ProxyList, Sync }

/// One name of `dns.list` / `proxy.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Entry {
    pub name: String,
    pub desired: Option<String>,
    pub actual: Option<String>,
    /// `ok`, `missing`, `different`, `extra`, `conflict` (a person's entry holds
    /// the name).
    pub status: String,
}

/// The reply to `dns.list` / `proxy.list`: one backend and its names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Entries {
    pub backend: String,
    pub healthy: bool,
    pub error: Option<String>,
    pub entries: Vec<Entry>,
}

/// The health of one backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BackendStatus {
    pub backend: String,
    pub healthy: bool,
    /// RFC 3339 time of the last successful pass.
    pub last_sync: Option<String>,
    pub error: Option<String>,
    /// Names a person's own entry holds.
    pub conflicts: Vec<String>,
    pub entries: usize,
}

/// `cubeos/state/proxy` and the reply to `sync`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProxyStatus {
    pub dns: BackendStatus,
    pub proxy: BackendStatus,
    /// Entries changed by passes whose desired state had not changed: drift repaired.
    pub drift_repaired: u64,
    pub passes: u64,
}
