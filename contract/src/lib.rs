//! The CubeOS bus contract: everything two parts of the system must agree on, and
//! nothing else.
//!
//! # Background
//! CubeOS is a set of small services linked by an MQTT broker; the dashboard, the
//! CLI, hardware buttons and Swarm node agents are its clients. They share no code
//! paths at run time, only this contract. A client (a node agent, the CLI on a
//! laptop) builds it without SQLite or a Docker client: the sqlx derives on the
//! models are behind the `sqlx` feature, which only the registry turns on.
//!
//! # Design
//! - [`api`]: every command as a type (service, action, the role it needs, its
//!   reply type), one module per service, with the state and event payloads that
//!   service publishes. The role table is derived from it.
//! - [`topics`]: every topic of the bus, one function each.
//! - [`envelope`]: request / reply / error envelopes and the closed set of wire
//!   error codes ([`ErrorCode`]); [`BusError`] is the one error that crosses the bus.
//! - [`roles`]: who may call which command; the gate and every service apply it.
//! - [`secret`]: [`Secret`](secret::Secret), the type every secret travels as,
//!   sealed wherever it goes.
//! - [`models`]: one struct per table of the store. Secret columns never serialise.
//! - [`liveness`]: what a service's liveness topic says.
//! - [`validate`]: field rules (names that become paths, ports, enums, lengths).
//!
//! # Limitations
//! Commands of services not built yet (backup scheduler, network mode) are only in
//! the role table, untyped, until those services land.

pub mod api;
pub mod envelope;
pub mod liveness;
pub mod models;
pub mod roles;
pub mod schema;
pub mod secret;
pub mod topics;
pub mod validate;

pub use api::Command;
pub use envelope::{BusError, ErrorCode};
