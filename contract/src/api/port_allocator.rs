//! The port allocator's commands and `cubeos/state/ports` ([`PortStats`]).

use serde::{Deserialize, Serialize};

use super::{commands, no_args};
use crate::models::{AppType, Protocol};
use crate::topics::service::PORT_ALLOCATOR;

commands! { PORT_ALLOCATOR;
    Allocate = "allocate", Admin => Allocated;
    Release = "release", Admin => super::registry::Released;
    Check = "check", Readonly => PortCheck;
    Available = "available", Readonly => AvailablePorts;
    Stats = "stats", Readonly => PortStats;
}

no_args! { Stats }

/// `allocate`: free ports for an app, reserved in the registry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Allocate {
    pub app: String,
    pub protocol: Option<Protocol>,
    pub count: Option<i64>,
    #[serde(default)]
    pub preferred: Vec<i64>,
    #[serde(rename = "type")]
    pub app_type: Option<AppType>,
}

/// Whether the Swarm check ran, for replies: a reply never pretends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum SwarmCheck {
    Checked,
    Unavailable { reason: String },
}

/// The reply to `allocate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Allocated {
    pub app: String,
    pub protocol: Protocol,
    pub ports: Vec<u16>,
    /// What became of preferred ports, and ports taken meanwhile.
    pub notes: Vec<String>,
    pub swarm: SwarmCheck,
}

/// `release`: one port of an app, or all of them.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub app: String,
    pub port: Option<i64>,
    pub protocol: Option<Protocol>,
}

/// `check`: who holds a port.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub port: i64,
    pub protocol: Option<Protocol>,
}

/// One holder of a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Holder {
    App {
        app: String,
    },
    Socket {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        process: Option<String>,
    },
    Swarm {
        service: String,
    },
}

/// The reply to `check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PortCheck {
    pub port: u16,
    pub protocol: Protocol,
    pub free: bool,
    /// The app type whose range holds it.
    pub range: Option<String>,
    pub reserved: bool,
    pub held_by: Vec<Holder>,
    pub summary: String,
    pub swarm: SwarmCheck,
}

/// `available`: the next free ports of a range.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Available {
    #[serde(rename = "type")]
    pub app_type: Option<AppType>,
    pub protocol: Option<Protocol>,
    pub limit: Option<i64>,
}

/// The reply to `available`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AvailablePorts {
    #[serde(rename = "type")]
    pub app_type: AppType,
    pub protocol: Protocol,
    pub ports: Vec<u16>,
    pub swarm: SwarmCheck,
}

/// In use / free in one range, for one protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RangeStats {
    #[serde(rename = "type")]
    pub app_type: String,
    pub start: u16,
    pub end: u16,
    pub in_use: usize,
    pub free: usize,
}

/// `cubeos/state/ports` and the reply to `stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PortStats {
    pub tcp: Vec<RangeStats>,
    pub udp: Vec<RangeStats>,
    pub swarm: SwarmCheck,
}
