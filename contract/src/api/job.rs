//! Jobs: commands that go on after their reply. The reply names the job
//! ([`JobStarted`], or a command's own reply with a `job` field); the work
//! reports [`Progress`] events on its topic until one says `done` or `failed`.

use serde::{Deserialize, Serialize};

use crate::envelope::ErrorCode;

/// The reply to a command that goes on as a job: follow its progress events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobStarted {
    pub job: String,
    pub app: String,
    /// The job's steps, in order.
    pub steps: Vec<String>,
}

/// A progress event of a job (and the reply to `job.get`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Progress {
    pub job: String,
    pub step: usize,
    pub of: usize,
    pub name: String,
    /// `running`, `done` (the whole job), `failed`.
    pub status: String,
    pub message: String,
    /// On `failed`: the wire error code of what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
}
