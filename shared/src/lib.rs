//! The CubeOS common crate: everything two services must agree on.
//!
//! CubeOS is a set of small services linked by an MQTT broker. They share no Rust
//! code paths at run time — only the contract in this crate:
//!
//! - [`topics`]: every topic of the bus, one function each. No other code spells a
//!   topic string, so the contract can be read (and changed) in one place.
//! - [`envelope`]: the request / reply / error envelopes and the closed set of wire
//!   error codes ([`ErrorCode`]); [`BusError`] is the one error type that crosses the
//!   bus, and each service maps its own typed errors onto it exactly once.
//! - [`bus`]: the client every service and the CLI use: request with timeout and
//!   correlation id, one handler per action, retained state that survives reconnects
//!   (the broker keeps nothing across restarts, so the client republishes what it
//!   owns), and the liveness last will.
//! - [`liveness`]: `starting` / `online` / `offline`, what a service's liveness
//!   topic says.
//! - [`models`]: one struct per table of the store (serde + sqlx `FromRow`). Secret
//!   columns are never serialised.
//! - [`roles`]: who may call which action; the gate and every service apply it.
//! - [`secrets`]: the data dir's key, which seals secrets at rest and on the
//!   loopback bus ([`private_file`] keeps it, and the broker credentials, at 0600).
//! - [`validate`]: field rules (names that become paths, ports, enums, lengths).
//! - [`config`]: built-in defaults, an optional TOML file, `CUBEOS__SECTION__KEY`
//!   environment overrides, humantime durations.
//! - [`docker`]: the Docker Engine client (bollard), for the services that need it.
//! - [`procnet`]: the host's bound ports and their processes, from `/proc`.
//! - [`clock`]: UTC dates for timestamps.
//! - [`telemetry`]: tracing setup.
//! - [`service`]: the [`ServiceContext`] handed to each service's `run`.

pub mod bus;
pub mod clock;
pub mod config;
pub mod docker;
pub mod envelope;
pub mod liveness;
pub mod models;
pub mod private_file;
pub mod procnet;
pub mod roles;
pub mod secrets;
pub mod service;
pub mod telemetry;
pub mod topics;
pub mod validate;

pub use bus::{Bus, BusOptions, Request};
pub use config::Config;
pub use envelope::{BusError, ErrorCode};
pub use service::ServiceContext;
