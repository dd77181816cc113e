//! The compatibility report: for each compose key that Swarm does not take as it
//! is, what CubeOS did with it and why.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Translated onto something Swarm does (possibly differently named).
    Mapped,
    /// Dropped: Swarm has no equivalent and the app works without it.
    Ignored,
    /// Swarm cannot honour it and the app may not work, or it gives the app power
    /// over the box: the install is refused unless forced.
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The compose service, or empty for a top-level key.
    pub service: String,
    pub key: String,
    pub outcome: Outcome,
    pub reason: String,
}

/// Rows collected while translating one file.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn add(&mut self, service: &str, key: &str, outcome: Outcome, reason: impl Into<String>) {
        self.rows.push(Row {
            service: service.to_owned(),
            key: key.to_owned(),
            outcome,
            reason: reason.into(),
        });
    }

    pub fn mapped(&mut self, service: &str, key: &str, reason: impl Into<String>) {
        self.add(service, key, Outcome::Mapped, reason);
    }

    pub fn ignored(&mut self, service: &str, key: &str, reason: impl Into<String>) {
        self.add(service, key, Outcome::Ignored, reason);
    }

    pub fn unsupported(&mut self, service: &str, key: &str, reason: impl Into<String>) {
        self.add(service, key, Outcome::Unsupported, reason);
    }

    /// The reasons an install is refused without force.
    pub fn refusals(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| r.outcome == Outcome::Unsupported)
            .map(|r| {
                let at = if r.service.is_empty() {
                    r.key.clone()
                } else {
                    format!("{}.{}", r.service, r.key)
                };
                format!("{at}: {}", r.reason)
            })
            .collect()
    }
}
