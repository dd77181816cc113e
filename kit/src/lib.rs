//! The CubeOS service kit: what every service (and the CLI) is built on.
//!
//! # Background
//! Each service of CubeOS is a small program on the bus. Before this crate each
//! hand-wrote its connection, its command loop and its shell-outs; now they share
//! them, and the contract they speak lives in `cubeos-contract`.
//!
//! # Design
//! - [`bus`]: the client every service and the CLI use: typed calls with timeout
//!   and correlation id ([`Bus::call`]), one handler per command type
//!   ([`Bus::bind`]), retained state that survives reconnects, the liveness last
//!   will, and secrets sealed on the way out when the client holds the key.
//! - [`service`]: the [`ServiceContext`] handed to each service's `run`, and the
//!   shutdown signal.
//! - [`config`]: built-in defaults, an optional TOML file, `CUBEOS__SECTION__KEY`
//!   environment overrides, humantime durations.
//! - [`secrets`]: the data dir's key ([`secrets::SecretBox`]), which seals every
//!   [`Secret`](cubeos_contract::secret::Secret) at rest and on the loopback bus
//!   ([`private_file`] keeps it, and the broker credentials, at 0600).
//! - [`docker`] (feature `docker`): the Docker Engine client, for the services
//!   that drive Docker.
//! - [`procnet`]: the host's bound ports and their processes, from `/proc`.
//! - [`clock`]: UTC dates for timestamps; [`telemetry`]: tracing setup.
//!
//! # Limitations
//! The runner, the state mirror, jobs and the host executor described by the kit
//! issue are not all here yet; see the README's "How to add a service".

pub mod bus;
pub mod clock;
pub mod config;
#[cfg(feature = "docker")]
pub mod docker;
pub mod job;
pub mod mirror;
pub mod private_file;
pub mod procnet;
pub mod runner;
pub mod secrets;
pub mod service;
pub mod telemetry;

pub use bus::{Bus, BusOptions, Request};
pub use config::Config;
pub use cubeos_contract::{BusError, ErrorCode};
pub use service::ServiceContext;
