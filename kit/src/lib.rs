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
//! - [`service`]: the [`ServiceContext`] handed to each service's `run`, the
//!   shutdown signal, and the [`service::Entry`] the service list holds.
//! - [`runner`]: the one loop of a service ([`runner::Service`]): bind, follow
//!   retained state, serve, react once changes settle and every interval, back
//!   off while failing, log ready and stopped.
//! - [`mirror`]: the registry's retained app states as typed records
//!   ([`mirror::AppMirror`]).
//! - [`job`]: long work that replies at once and reports progress
//!   ([`job::Jobs`], [`job::Job`] over a typed [`job::Step`] list).
//! - [`host`]: the one way to run a system tool, with timeouts, captured output
//!   and secrets on stdin only; [`host::Recording`] for unit tests.
//! - [`config`]: built-in defaults, an optional TOML file, `CUBEOS__SECTION__KEY`
//!   environment overrides, humantime durations.
//! - [`secrets`]: the data dir's key ([`secrets::SecretBox`]), which seals every
//!   [`Secret`](cubeos_contract::secret::Secret) at rest and on the loopback bus
//!   ([`private_file`] keeps it, and the broker credentials, at 0600).
//! - `docker` (feature `docker`): the Docker Engine client and a lazily
//!   connected `DockerLink` with a retry window, for the services that
//!   drive Docker.
//! - [`procnet`]: the host's bound ports and their processes, from `/proc`.
//! - [`slots`]: the fixed set of client ids the CLI on the box leases, so the
//!   broker sees a bounded number of reply topics however often it runs.
//! - [`clock`]: UTC dates for timestamps; [`telemetry`]: tracing setup.
//!
//! # Limitations
//! The orchestrator and the registry keep loops of their own (Docker events; the
//! store's writer), outside the runner. Every service's config section is still
//! in [`config`]: `cubeos up` reads one file, but a service does not own its
//! section's type yet.

pub mod bus;
pub mod clock;
pub mod config;
#[cfg(feature = "docker")]
pub mod docker;
pub mod files;
pub mod host;
pub mod job;
pub mod listen;
pub mod mirror;
pub mod private_file;
pub mod procnet;
pub mod runner;
pub mod secrets;
pub mod service;
pub mod slots;
pub mod telemetry;

pub use bus::{Bus, BusOptions, Request};
pub use config::Config;
pub use cubeos_contract::{BusError, ErrorCode};
pub use service::ServiceContext;
