//! The orchestrator's commands (install, lifecycle, logs, status, images) and the
//! payloads it publishes: [`AppStatus`] on `cubeos/state/apps/<name>/status` and
//! [`Progress`] on `cubeos/events/apps/<name>/progress` and
//! `cubeos/events/images/progress`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::commands;
pub use super::job::{JobStarted, Progress};
use crate::topics::service::ORCHESTRATOR;

commands! { ORCHESTRATOR;
    Install = "install", Admin => JobStarted;
    Start = "start", User => AppChanged;
    Stop = "stop", User => AppChanged;
    Restart = "restart", User => AppChanged;
    Enable = "enable", Admin => AppChanged;
    Disable = "disable", Admin => AppChanged;
    Remove = "remove", Admin => Removed;
    Logs = "logs", Readonly => LogLines;
    Status = "status", Readonly => Statuses;
    JobGet = "job.get", Readonly => Progress;
    ImageList = "image.list", Readonly => ImageReport;
    ImageLoad = "image.load", Admin => LoadStarted;
}

/// `install`: an app from a compose file (its text, or a path on the box).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Install {
    /// The compose file's text, or
    pub compose: Option<String>,
    /// an absolute path to it on the box, or
    pub path: Option<String>,
    /// the id of an app in the box's store (`store.list`), whose icon it keeps.
    pub store: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub force: bool,
    /// Keep the app's data directory if the install fails.
    #[serde(default)]
    pub keep_data: bool,
}

macro_rules! app_command {
    ($($ty:ident: $doc:literal,)*) => {$(
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $ty {
            pub name: String,
        }
    )*};
}

app_command! {
    Start: "`start`: deploys a stopped app again.",
    Stop: "`stop`: scales an app to zero (it stays installed).",
    Restart: "`restart`: replaces an app's tasks.",
    Enable: "`enable`: marks an app enabled and starts it.",
    Disable: "`disable`: marks an app disabled and stops it.",
}

/// The reply to a lifecycle command: what was done to the app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AppChanged {
    pub app: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted: Option<bool>,
    /// The job following Swarm until the change is carried out: its progress is
    /// on the app's progress topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// `remove`: an app, its stack and (unless kept) its data.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Remove {
    pub name: String,
    #[serde(default)]
    pub keep_data: bool,
}

/// The reply to `remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Removed {
    pub app: String,
    pub removed: bool,
    pub data_kept: bool,
    /// Volumes still in use by a container outside the app, left in place.
    pub volumes_left: Vec<String>,
}

/// `logs`: the last lines of an app's services.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    pub name: String,
    pub tail: Option<i64>,
    /// Unix seconds.
    pub since: Option<i64>,
}

/// The reply to `logs`: `<service>: <line>` each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LogLines {
    pub app: String,
    pub lines: Vec<String>,
}

/// `status`: one app's runtime status, or every app's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub name: Option<String>,
}

/// The reply to `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Statuses {
    One { app: String, status: Option<AppStatus> },
    All(BTreeMap<String, AppStatus>),
}

/// `cubeos/state/apps/<name>/status`: an app's runtime status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AppStatus {
    pub running: bool,
    /// `running`, `starting`, `stopping`, `stopped`, `failing`, `not_deployed`,
    /// `unknown`.
    pub health: String,
    pub replicas: String,
    pub last_started: String,
    pub error: String,
}

/// `job.get`: a job's last progress (install, lifecycle and image jobs).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobGet {
    pub job: String,
}

/// `image.list`: whether the box has images.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageList {
    /// These images; without it, every image an installed app uses.
    pub images: Option<Vec<String>>,
}

/// Where an image was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// This node's Docker engine has it.
    Node,
    /// The configured local registry has it.
    Registry,
}

/// One image and whether the box has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageState {
    pub image: String,
    pub present: bool,
    /// `None` when it is missing.
    pub location: Option<Location>,
    /// Bytes on this node, when it is there.
    pub size: Option<i64>,
}

/// One row of `image.list`: an image and the apps using it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageRow {
    #[serde(flatten)]
    pub state: ImageState,
    #[serde(default)]
    pub apps: Vec<String>,
}

/// The reply to `image.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageReport {
    pub images: Vec<ImageRow>,
    /// Other Swarm nodes, whose engines were not asked.
    pub other_nodes_unchecked: usize,
}

/// `image.load`: an image archive on this box (what `docker save` writes).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageLoad {
    /// Absolute.
    pub path: String,
}

/// The reply to `image.load`: follow `cubeos/events/images/progress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LoadStarted {
    pub job: String,
    pub path: String,
    pub bytes: u64,
}
