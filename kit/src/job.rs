//! Long work as a job: the command that starts it replies at once with the job's
//! id, the work reports [`Progress`] events on a topic, and the last event of each
//! recent job is kept so that `job.get` can answer a client that missed some.
//!
//! A job's steps are a type ([`Step`]): numbered once, by their order, and named
//! the same in every event.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cubeos_contract::api::job::Progress;
use cubeos_contract::validate;
use tracing::warn;

use crate::{Bus, BusError, ErrorCode};

/// The steps of one kind of job, in order.
pub trait Step: Copy + PartialEq + Send + Sync + 'static {
    /// Every step, in order.
    const ALL: &'static [Self];

    /// The step's name, as events and progress bars show it.
    fn name(self) -> &'static str;

    /// Its number, from 1.
    fn number(self) -> usize {
        Self::ALL.iter().position(|s| *s == self).map_or(0, |i| i + 1)
    }

    /// Every step's name, in order (for the reply that starts the job).
    fn names() -> Vec<String> {
        Self::ALL.iter().map(|s| s.name().to_owned()).collect()
    }
}

/// A service's recent jobs: ids handed out, and the last event of each.
pub struct Jobs {
    bus: Bus,
    next: AtomicU64,
    kept: usize,
    last: std::sync::Mutex<VecDeque<Progress>>,
    /// Per subject (an app), the id of its one current job among those started
    /// with [`Jobs::start_sole`].
    sole: std::sync::Mutex<HashMap<String, String>>,
}

impl Jobs {
    /// Jobs published on `bus`, the last event of the `kept` most recent ones kept.
    pub fn new(bus: Bus, kept: usize) -> Arc<Jobs> {
        Arc::new(Jobs {
            bus,
            next: AtomicU64::new(1),
            kept: kept.max(1),
            last: Default::default(),
            sole: Default::default(),
        })
    }

    /// A new job id, `<kind>-<n>`, unique in this process.
    pub fn next_id(&self, kind: &str) -> String {
        format!("{kind}-{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Starts a job of steps `S` whose events go to `topic`.
    pub fn start<S: Step>(self: &Arc<Self>, kind: &str, topic: String) -> Job<S> {
        Job {
            jobs: Arc::clone(self),
            id: self.next_id(kind),
            topic,
            subject: None,
            steps: PhantomData,
        }
    }

    /// Starts the one current job for `subject`: the one started before it for
    /// the same subject is [`Job::superseded`] from now on, so however many
    /// commands a caller sends, one job per subject goes on working.
    pub fn start_sole<S: Step>(self: &Arc<Self>, kind: &str, subject: &str, topic: String) -> Job<S> {
        let mut job = self.start(kind, topic);
        self.sole
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(subject.to_owned(), job.id.clone());
        job.subject = Some(subject.to_owned());
        job
    }

    /// The subject is gone (an app removed): its current job is superseded too.
    pub fn forget(&self, subject: &str) {
        self.sole.lock().unwrap_or_else(|p| p.into_inner()).remove(subject);
    }

    /// Publishes `event` on `topic` and keeps it as its job's last.
    pub async fn publish(&self, topic: &str, event: Progress) {
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            last.retain(|j| j.job != event.job);
            if last.len() >= self.kept {
                last.pop_front();
            }
            last.push_back(event.clone());
        }
        if let Err(e) = self.bus.publish_event(topic, &event).await {
            warn!(error = %e, "progress event not sent");
        }
    }

    /// `job.get`: a recent job's last event. One from before a restart is
    /// `not_found`.
    pub fn get(&self, job: &str) -> Result<Progress, BusError> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.iter().find(|j| j.job == job).cloned().ok_or_else(|| {
            BusError::not_found(format!(
                "no job '{}' (ended before a restart?)",
                validate::truncate(job, 64)
            ))
        })
    }
}

/// One running job of steps `S`.
pub struct Job<S: Step> {
    jobs: Arc<Jobs>,
    id: String,
    topic: String,
    /// Set for a job started with [`Jobs::start_sole`].
    subject: Option<String>,
    steps: PhantomData<S>,
}

impl<S: Step> Job<S> {
    /// The id the starting command replies with.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A later job for the same subject has started (or the subject is gone):
    /// this one should stop.
    pub fn superseded(&self) -> bool {
        let Some(subject) = &self.subject else {
            return false;
        };
        self.jobs.sole.lock().unwrap_or_else(|p| p.into_inner()).get(subject) != Some(&self.id)
    }

    /// `step` is under way.
    pub async fn running(&self, step: S, message: impl Into<String>) {
        self.send(step, "running", message.into(), None).await;
    }

    /// The whole job is done.
    pub async fn done(&self, message: impl Into<String>) {
        // A step list is never empty; if one were, the event still says done.
        let step = S::ALL.last().map_or(0, |s| s.number());
        let name = S::ALL.last().map_or("done", |s| s.name());
        self.publish(step, name, "done", message.into(), None).await;
    }

    /// The job failed at `step`; the event carries the error's code.
    pub async fn failed(&self, step: S, error: &BusError) {
        let message = format!("{} failed: {}", step.name(), error.message);
        self.send(step, "failed", message, Some(error.code)).await;
    }

    async fn send(&self, step: S, status: &str, message: String, code: Option<ErrorCode>) {
        self.publish(step.number(), step.name(), status, message, code).await;
    }

    async fn publish(&self, step: usize, name: &str, status: &str, message: String, code: Option<ErrorCode>) {
        let event = Progress {
            job: self.id.clone(),
            step,
            of: S::ALL.len(),
            name: name.to_owned(),
            status: status.to_owned(),
            message,
            code,
        };
        self.jobs.publish(&self.topic, event).await;
    }
}
