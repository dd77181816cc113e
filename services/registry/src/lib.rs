//! The registry: the only writer of the CubeOS store.
//!
//! Every change to apps, ports, names, settings and profiles is a command to this
//! service. A command is validated field by field, applied in one transaction on
//! the single writer connection, and answered only after the commit. The registry
//! then publishes the changed objects as retained state, in commit order (a write
//! holds the registry's write lock from its transaction to its state publish), so
//! a subscriber to `cubeos/state/#` always converges on what the store holds.
//!
//! Domain logic lives in plain async functions over a [`Store`] (modules [`apps`],
//! [`ports`], [`fqdns`], [`settings`], [`profiles`], [`users`], [`tokens`],
//! [`vault`]); sign-in flows are in [`auth`], failed-login counting in [`throttle`],
//! bounded password hashing in [`hasher`];
//! [`commands`] is the thin layer that binds them to the bus.
//!
//! Secrets arrive sealed (by the gate, or the local CLI) and are stored sealed or
//! hashed: argon2id for passwords, SHA-256 for tokens, XChaCha20-Poly1305 under the
//! data dir's key for WiFi, mount and VPN secrets. A token in a reply is sealed; the
//! gate opens it on its client's own connection.
//!
//! ## Commands (`cubeos/cmd/registry/<action>`)
//!
//! | action | args | reply |
//! |---|---|---|
//! | `app.create` | `name`, optional fields of `apps`, `ports: [{port, protocol?, description?, is_primary?}]`, `fqdns: [{fqdn, backend_port, ssl_enabled?}]` | the app with ports and fqdns |
//! | `app.get` | `name` | the app with ports and fqdns |
//! | `app.list` | `type?`, `enabled?` | list of apps |
//! | `app.update` | `name` + fields to change | the app |
//! | `app.delete` | `name` | `{deleted}`; ports, fqdns, health and profile rows go too |
//! | `port.reserve` | `app`, `port`, `protocol?`, `description?`, `is_primary?` | the reservation; `conflict` names the holder |
//! | `port.release` | `app`, `port?`, `protocol?` | `{released: [...]}` (all of the app's ports without `port`) |
//! | `port.list` | `app?` | reservations with their app's name |
//! | `fqdn.add` | `app`, `fqdn`, `backend_port`, `ssl_enabled?` | the fqdn row |
//! | `fqdn.remove` | `fqdn` | the removed row |
//! | `fqdn.set_proxy_id` | `fqdn`, `npm_proxy_id` (null clears) | the row (the proxy service records NPM's id) |
//! | `state.get` | `key?` | one setting, or all as an object |
//! | `state.set` | `key`, `value` | the setting (`schema_version` is read-only) |
//! | `pref.get` / `pref.set` / `pref.delete` | as `state.*` | as `state.*` |
//! | `profile.list` | — | profiles with their apps |
//! | `profile.get` | `name` | the profile |
//! | `profile.create` | `name`, `display_name?`, `description?` | the profile |
//! | `profile.update` | `name`, `display_name?`, `description?`, `is_active?` | the profile |
//! | `profile.delete` | `name` | `{deleted}` (system profiles refuse) |
//! | `profile.set_apps` | `name`, `apps: {app: enabled}` | the profile |
//! | `setup` | `username`, `password` | first admin + session (once) |
//! | `setup.status` | — | `{setup_complete}` (anyone, signed in or not) |
//! | `auth.connect` | `username?`, `password?`, `address?` | `{user, role, session?}` (the gate only) |
//! | `auth.login` / `auth.refresh` / `auth.logout` | credentials / — / `all?` | a session token / a new one / `{ended}` |
//! | `user.add` / `user.list` / `user.delete` / `user.passwd` / `user.role` | see README | users, never hashes |
//! | `token.issue` / `token.list` / `token.revoke` | `kind`, `id` / — / `id` (a token id, or a device / node name) | device and node credentials |
//! | `network.get` / `network.set`, `mount.*`, `vpn.*` | see README | rows without their secrets |
//!
//! ## State it owns
//!
//! `cubeos/state/apps/<name>` (config, ports, fqdns; cleared on delete),
//! `cubeos/events/auth/revoked` (session ids and user names whose connections end),
//! `cubeos/state/system`, `cubeos/state/profiles/<name>`; all republished on every
//! (re)connect by the bus client.

pub mod apps;
pub mod auth;
pub mod commands;
pub mod error;
pub mod fqdns;
pub mod hasher;
pub mod ports;
pub mod profiles;
pub mod settings;
pub mod store;
pub mod throttle;
pub mod tokens;
pub mod users;
pub mod vault;

use std::path::PathBuf;
use std::sync::Arc;

use cubeos_contract::models::ProfileRecord;
use cubeos_contract::topics::{self, service::REGISTRY};
use cubeos_kit::config::AuthConfig;
use cubeos_kit::secrets::SecretBox;
use cubeos_kit::{Bus, Config, ServiceContext};
use tokio::sync::{Mutex, MutexGuard};
use tracing::info;

pub use error::RegistryError;
pub use store::Store;

/// The service name on the bus.
pub const SERVICE: &str = REGISTRY;

/// The running registry: the store, its bus connection, the write lock, and what
/// sign-in needs (the secret key, session settings, the failed-login throttle, the
/// bounded password hasher).
pub struct Registry {
    pub store: Store,
    pub bus: Bus,
    /// Root under which default app paths are placed.
    pub data_dir: PathBuf,
    pub secrets: SecretBox,
    pub auth: AuthConfig,
    pub throttle: throttle::Throttle,
    pub hasher: hasher::Hasher,
    write: Mutex<()>,
}

impl Registry {
    pub fn new(store: Store, bus: Bus, config: &Config, secrets: SecretBox) -> Self {
        Registry {
            store,
            bus,
            data_dir: config.data_dir.clone(),
            secrets,
            auth: config.auth.clone(),
            throttle: throttle::Throttle::new(config.auth.max_failures, config.auth.lockout),
            hasher: hasher::Hasher::new(config.auth.max_concurrent_hashes, config.auth.max_queued_hashes),
            write: Mutex::new(()),
        }
    }

    /// Held from a write's transaction to its state publish, so that state topics
    /// are published in commit order.
    pub async fn writing(&self) -> MutexGuard<'_, ()> {
        self.write.lock().await
    }

    pub async fn publish_app(&self, name: &str) -> error::Result<()> {
        let record = apps::load_record(&mut *self.store.reader.acquire().await?, name).await?;
        self.publish(&topics::app_state(name), &record).await;
        Ok(())
    }

    pub async fn clear_app(&self, name: &str) {
        if let Err(e) = self.bus.clear_state(&topics::app_state(name)).await {
            tracing::warn!(error = %e, app = name, "state clear not sent");
        }
    }

    pub async fn publish_system(&self) -> error::Result<()> {
        let all = settings::all(&self.store, settings::Table::SystemState).await?;
        self.publish(&topics::system_state(), &all).await;
        Ok(())
    }

    pub async fn publish_profile(&self, record: &ProfileRecord) {
        self.publish(&topics::profile_state(&record.profile.name), record).await;
    }

    pub async fn publish_profile_named(&self, name: &str) -> error::Result<()> {
        let record = profiles::get(&self.store, name).await?;
        self.publish_profile(&record).await;
        Ok(())
    }

    /// Publishes every object the registry owns (at start).
    pub async fn publish_everything(&self) -> error::Result<()> {
        for record in apps::list(&self.store, &Default::default()).await? {
            self.publish(&topics::app_state(&record.app.name), &record).await;
        }
        for record in profiles::list(&self.store).await? {
            self.publish_profile(&record).await;
        }
        self.publish_system().await
    }

    /// A state publish that fails (bus down) is not the command's failure: the
    /// commit stands, and the bus client republishes owned state on reconnect.
    async fn publish<T: serde::Serialize>(&self, topic: &str, value: &T) {
        if let Err(e) = self.bus.publish_state(topic, value).await {
            tracing::warn!(error = %e, topic, "state publish not sent");
        }
    }
}

/// The registry service's entry point.
pub async fn run(ctx: ServiceContext) -> anyhow::Result<()> {
    let ServiceContext {
        config,
        bus,
        mut shutdown,
    } = ctx;
    let store = Store::open(&config.database_path(), &config.store).await?;
    settings::mark_boot(&store).await?;
    let secrets = SecretBox::load_or_create(&config.secret_key_path())?;
    let registry = Arc::new(Registry::new(store.clone(), bus.clone(), &config, secrets));
    commands::register(&registry);
    registry.publish_everything().await?;
    bus.serve().await?;
    info!(service = SERVICE, db = %config.database_path().display(), "service ready");
    shutdown.wait().await;
    bus.shutdown().await;
    store.close().await;
    info!(service = SERVICE, "service stopped");
    Ok(())
}
