//! Client commands: connect, send one command, print the reply.
//!
//! On the box, a CLI that can read the data dir's service credentials (root, or
//! whoever ran `cubeos up`) talks to the loopback broker and acts as the system: a
//! fresh `cubeos up` followed by `cubeos app ls` needs no configuration. Everyone
//! else signs in with `cubeos login`, which keeps a session token in the user's
//! config dir (mode 0600); later commands go through the gate with it.

pub mod app;
pub mod auth;
pub mod compose_file;
pub mod install;
pub mod names;
pub mod port;
pub mod preview;
pub mod state;
pub mod token;
pub mod user;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use cubeos_broker::Credentials;
use cubeos_shared::secrets::SecretBox;
use cubeos_shared::{Bus, BusOptions, Config};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A connected CLI: local (as the system) or signed in through the gate.
pub struct Client {
    pub bus: Bus,
    /// Local only: the key that seals secrets for the loopback broker. Through the
    /// gate, secrets go plain over the client's own connection and the gate seals.
    key: Option<SecretBox>,
}

impl Client {
    /// A secret argument as it must travel from here.
    pub fn secret(&self, plain: &str) -> anyhow::Result<String> {
        match &self.key {
            Some(key) => Ok(key.seal(plain)?),
            None => Ok(plain.to_owned()),
        }
    }

    /// Opens sealed values in a reply (local only; the gate opens them otherwise).
    pub fn open(&self, reply: &mut Value) {
        if let Some(key) = &self.key {
            key.open_fields(reply);
        }
    }

    pub async fn shutdown(self) {
        self.bus.shutdown().await;
    }
}

/// The session `cubeos login` keeps.
#[derive(Serialize, Deserialize)]
pub struct SavedLogin {
    pub gate: SocketAddr,
    pub username: String,
    pub token: String,
    pub expires_at: Option<i64>,
}

/// `$XDG_CONFIG_HOME/cubeos/login.json` (or `~/.config/...`).
pub fn login_path() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .context("neither XDG_CONFIG_HOME nor HOME is set")?;
    Ok(base.join("cubeos").join("login.json"))
}

/// Connects as a one-off client (`cli-<random>`): locally when this user can read
/// the service credentials, otherwise with the saved login.
pub async fn connect_client(config: &Config) -> anyhow::Result<Client> {
    let client_id = format!("cli-{:016x}", rand_id());
    if let Ok(credentials) = Credentials::load(&config.credentials_path()) {
        let options = BusOptions::new(config, client_id, &credentials.username, &credentials.password);
        let bus = Bus::connect(options)
            .await
            .map_err(|e| anyhow::anyhow!("{e}; is `cubeos up` running?"))?;
        let key = SecretBox::load(&config.secret_key_path()).ok();
        return Ok(Client { bus, key });
    }
    let path = login_path()?;
    let saved: SavedLogin = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .with_context(|| {
            format!(
                "cannot read the service credentials in {} and not signed in: run `cubeos login`",
                config.data_dir.display()
            )
        })?;
    let bus = connect_gate(config, saved.gate, client_id, &saved.username, &saved.token)
        .await
        .map_err(|e| anyhow::anyhow!("{e}; your session may have ended: run `cubeos login`"))?;
    Ok(Client { bus, key: None })
}

/// Connects through the gate at `gate` with a password or token.
pub async fn connect_gate(
    config: &Config,
    gate: SocketAddr,
    client_id: String,
    username: &str,
    secret: &str,
) -> Result<Bus, cubeos_shared::BusError> {
    let mut options = BusOptions::new(config, client_id, username, secret);
    options.address = gate;
    Bus::connect(options).await
}

/// [`connect_client`], for commands that only need the bus.
pub async fn connect(config: &Config) -> anyhow::Result<Bus> {
    Ok(connect_client(config).await?.bus)
}

pub fn rand_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}

/// Reads a password: one line of stdin with `--password-stdin`, else a prompt
/// without echo.
pub fn read_password(prompt: &str, from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        rpassword::prompt_password(prompt)?
    };
    anyhow::ensure!(!password.is_empty(), "empty password");
    Ok(password)
}
