//! Every service CubeOS runs, in start order.
//!
//! # Background
//! `cubeos up` runs them all, `cubeos run <service>` one of them, its help text
//! names them, and the test harness starts them in-process. Each used to keep its
//! own list; this crate is the only one.
//!
//! # Design
//! An entry is a name and an entry point ([`Entry`]); the order is the start
//! order (the registry first: everyone else asks it something at start).
//! Adding a service is its crate, its module in `cubeos_contract::api` and one
//! line here.
//!
//! # Limitations
//! The list is compiled in: a service is part of this binary or it is not.

use cubeos_kit::service::Entry;

/// One entry for a service crate that has `SERVICE` and `run`.
macro_rules! entry {
    ($krate:ident) => {
        Entry {
            name: $krate::SERVICE,
            run: |ctx| Box::pin($krate::run(ctx)),
        }
    };
}

/// Every service, in start order.
pub const ALL: &[Entry] = &[
    entry!(cubeos_registry),
    entry!(cubeos_port_allocator),
    entry!(cubeos_orchestrator),
    entry!(cubeos_proxy),
];

/// The service called `name`.
pub fn find(name: &str) -> Option<&'static Entry> {
    ALL.iter().find(|e| e.name == name)
}

/// Every service's name, in start order.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|e| e.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_starts_first_and_every_name_is_found_once() {
        assert_eq!(names().first(), Some(&"registry"));
        for name in names() {
            assert_eq!(ALL.iter().filter(|e| e.name == name).count(), 1, "{name}");
            assert_eq!(find(name).map(|e| e.name), Some(name));
        }
        assert!(find("nope").is_none());
    }
}
