//! What every service's `run` receives.

use std::sync::Arc;

use tokio::sync::watch;

use crate::{Bus, Config};

/// The context a service runs in: configuration, its bus connection and a shutdown
/// signal. A service's entry point is `run(ctx: ServiceContext) -> anyhow::Result<()>`
/// and returns when `shutdown` fires.
#[derive(Clone)]
pub struct ServiceContext {
    pub config: Arc<Config>,
    pub bus: Bus,
    pub shutdown: Shutdown,
}

/// A cloneable shutdown signal.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending half of [`Shutdown`].
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Resolves once shutdown has been triggered (or the trigger dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|down| *down).await;
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}
