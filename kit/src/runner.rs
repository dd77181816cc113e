//! The one loop a service runs between taking commands and shutting down.
//!
//! A service says what it is ([`Service`]): its commands, the retained state it
//! follows, and its reaction, run once a burst of followed changes settles, every
//! interval, and again with exponential backoff while it fails. [`run`] does the
//! rest the same way for every service: bind, subscribe, serve, the `service
//! ready` / `service stopped` lines, and a clean shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::Bus;
use crate::bus::Message;
use crate::service::ServiceContext;

/// When a service reacts.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Unprompted, this often (and first at start, once `settle` has passed).
    pub interval: Duration,
    /// How long a burst of followed changes may last before the reaction runs.
    pub settle: Duration,
    /// The longest wait between retries of a failing reaction (from 1 s, doubling).
    pub max_backoff: Duration,
}

/// A service as the runner drives it.
pub trait Service: Send + Sync + Sized + 'static {
    /// Its name: its client id and the second level of its command topics.
    const NAME: &'static str;

    /// Binds its commands on `bus` (before it serves).
    fn bind(self: &Arc<Self>, bus: &Bus);

    /// The retained state filters whose messages go to [`Service::observe`].
    fn follows(&self) -> Vec<String> {
        Vec::new()
    }

    /// One followed message; true when it calls for a reaction.
    fn observe(&self, _topic: &str, _payload: &[u8]) -> bool {
        false
    }

    /// When it reacts.
    fn schedule(&self) -> Schedule;

    /// What it does once it serves, before the first reaction (such as
    /// publishing its state).
    fn ready(self: &Arc<Self>) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Its reaction; an error is retried with backoff.
    fn react(self: &Arc<Self>) -> impl Future<Output = Result<(), String>> + Send;
}

/// Runs `service` on the context's bus until shutdown.
pub async fn run<S: Service>(ctx: ServiceContext, service: Arc<S>) -> anyhow::Result<()> {
    let ServiceContext { bus, mut shutdown, .. } = ctx;
    service.bind(&bus);
    // Every followed filter into one queue, in arrival order per filter.
    let (tx, mut followed) = tokio::sync::mpsc::unbounded_channel::<Message>();
    for filter in service.follows() {
        let mut messages = bus.subscribe(&filter, rumqttc::QoS::AtMostOnce).await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(msg) = messages.recv().await {
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    bus.serve().await?;
    service.ready().await;
    info!(service = S::NAME, "service ready");

    let schedule = service.schedule();
    let first_backoff = Duration::from_secs(1);
    let mut backoff = first_backoff;
    let mut next = Instant::now() + schedule.settle;
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            Some(msg) = followed.recv() => {
                if service.observe(&msg.topic, &msg.payload) {
                    next = next.min(Instant::now() + schedule.settle);
                }
            }
            _ = tokio::time::sleep_until(next) => {
                let result = service.react().instrument(info_span!("react", service = S::NAME)).await;
                next = Instant::now() + match result {
                    Ok(()) => {
                        backoff = first_backoff;
                        schedule.interval
                    }
                    Err(e) => {
                        warn!(service = S::NAME, error = %e, retry_in = ?backoff, "reaction failed");
                        let wait = backoff;
                        backoff = (backoff * 2).min(schedule.max_backoff.max(first_backoff));
                        wait
                    }
                };
            }
        }
    }
    bus.shutdown().await;
    info!(service = S::NAME, "service stopped");
    Ok(())
}
