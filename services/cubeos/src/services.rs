//! The services this binary can run, by name: the one list `up` and `run` share.

use std::future::Future;
use std::pin::Pin;

use cubeos_shared::ServiceContext;

type Entry = fn(ServiceContext) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Every service, in start order.
pub const ALL: &[(&str, Entry)] = &[
    (cubeos_registry::SERVICE, |ctx| Box::pin(cubeos_registry::run(ctx))),
    (cubeos_port_allocator::SERVICE, |ctx| {
        Box::pin(cubeos_port_allocator::run(ctx))
    }),
    (cubeos_orchestrator::SERVICE, |ctx| {
        Box::pin(cubeos_orchestrator::run(ctx))
    }),
    (cubeos_proxy::SERVICE, |ctx| Box::pin(cubeos_proxy::run(ctx))),
];

pub fn find(name: &str) -> Option<Entry> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, entry)| *entry)
}

pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|(n, _)| *n).collect()
}
