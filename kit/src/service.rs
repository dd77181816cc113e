//! What every service's `run` receives.

use std::future::Future;
use std::pin::Pin;
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

/// What a service's entry point returns: it runs until shutdown.
pub type Running = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A service as its runners know it (`cubeos up`, `cubeos run`, the test
/// harness): its name, which is also its bus client id, and its entry point.
#[derive(Clone, Copy)]
pub struct Entry {
    pub name: &'static str,
    pub run: fn(ServiceContext) -> Running,
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
