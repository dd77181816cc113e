//! Client commands: connect, send commands, print the replies.
//!
//! On the box, a CLI that can read the data dir's service credentials (root, or
//! whoever ran `cubeos up`) talks to the loopback broker and acts as the system: a
//! fresh `cubeos up` followed by `cubeos app ls` needs no configuration. Everyone
//! else signs in with `cubeos login`, which keeps a session token in the user's
//! config dir (mode 0600); later commands go through the gate with it.
//!
//! A client never takes silence for an answer: before it asks a service anything it
//! waits (up to `--wait`) for the service's liveness to say `online`, fails with
//! `unavailable` when it says `offline` or says nothing, and a connection nobody
//! accepts fails at once. Every failure prints `error: <code>: <message>`.

pub mod app;
pub mod auth;
pub mod compose_file;
pub mod image;
pub mod install;
pub mod names;
pub mod port;
pub mod preview;
pub mod progress;
pub mod state;
pub mod store;
pub mod token;
pub mod user;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use cubeos_broker::Credentials;
use cubeos_contract::api::Command;
use cubeos_contract::liveness::Liveness;
use cubeos_contract::topics;
use cubeos_kit::secrets::SecretBox;
use cubeos_kit::slots::Slot;
use cubeos_kit::{Bus, BusError, BusOptions, Config};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// How long a service that has not announced itself at all may take to do so: its
/// retained liveness arrives right behind the subscription, so this only covers the
/// first moments of `cubeos up`.
const UNANNOUNCED_GRACE: Duration = Duration::from_secs(2);

/// What a local CLI command is padded to: the broker's read buffer per connection.
const CLI_COMMAND_PAD: usize = 10 * 1024;

/// What every client command needs.
pub struct Cli {
    pub config: Config,
    /// How long to wait for the system: services still starting, or a broker that
    /// went away in the middle of a long command.
    pub wait: Duration,
}

/// A connected CLI: local (as the system) or signed in through the gate.
pub struct Client {
    /// Local only, the bus holds the key that seals secrets for the loopback
    /// broker; through the gate, secrets go plain over the client's own connection
    /// and the gate seals.
    pub bus: Bus,
    /// Every service's liveness, as its retained topic says it.
    liveness: watch::Receiver<HashMap<String, Liveness>>,
    wait: Duration,
    /// The reply slot a local client holds for as long as it lives.
    _slot: Option<Slot>,
}

impl Client {
    /// Connects locally, under a leased reply slot (`cli-<n>`), when this user can
    /// read the service credentials; otherwise through the gate with the saved
    /// login, as a one-off client (`cli-<random>`: the gate, not the broker, holds
    /// its reply topic).
    pub async fn connect(cli: &Cli) -> Result<Client, BusError> {
        let config = &cli.config;
        if let Ok(credentials) = Credentials::load(&config.credentials_path()) {
            let (dir, count, wait) = (config.slots_dir(), config.bus.cli_slots, cli.wait);
            let slot = tokio::task::spawn_blocking(move || Slot::lease(&dir, "cli", count, wait))
                .await
                .map_err(|e| BusError::internal(e.to_string()))?
                .map_err(|e| BusError::unavailable(e.to_string()))?;
            let mut options = BusOptions::new(config, slot.client_id(), &credentials.username, &credentials.password);
            // A one-off connection: see `BusOptions::pad_commands_to`.
            options.pad_commands_to = CLI_COMMAND_PAD;
            if let Ok(key) = SecretBox::load(&config.secret_key_path()) {
                options = options.with_secrets(key);
            }
            let bus = Bus::connect(options)
                .await
                .map_err(|e| hint(e, "is `cubeos up` running?"))?;
            let mut client = Client::attach(bus, cli.wait).await?;
            client._slot = Some(slot);
            return Ok(client);
        }
        let Some(saved) = SavedLogin::load() else {
            return Err(auth::not_signed_in(cli).await);
        };
        let gate = auth::resolve(&saved.gate).await?;
        let bus = connect_gate(config, gate, &saved.username, &saved.token)
            .await
            .map_err(|e| match e.code {
                cubeos_kit::ErrorCode::Unauthorized => hint(e, "your session may have ended: run `cubeos login`"),
                _ => e,
            })?;
        Client::attach(bus, cli.wait).await
    }

    /// Starts following liveness on a connected bus.
    async fn attach(bus: Bus, wait: Duration) -> Result<Client, BusError> {
        let mut messages = bus
            .subscribe(&topics::all_service_statuses(), rumqttc::QoS::AtMostOnce)
            .await?;
        let (tx, liveness) = watch::channel(HashMap::new());
        let mut connected = bus.watch_connected();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = messages.recv() => {
                        let Some(msg) = msg else { return };
                        let Some(service) = topics::service_of_status(&msg.topic) else { continue };
                        tx.send_modify(|all| match Liveness::parse(&msg.payload) {
                            Some(l) => {
                                all.insert(service.to_owned(), l);
                            }
                            None => {
                                all.remove(service);
                            }
                        });
                    }
                    changed = connected.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        // A broker that restarted knows nothing of before: what
                        // the old one said must not pass for what is true now.
                        if !*connected.borrow_and_update() {
                            tx.send_modify(HashMap::clear);
                        }
                    }
                }
            }
        });
        Ok(Client {
            bus,
            liveness,
            wait,
            _slot: None,
        })
    }

    /// Sends one command once its service is online, and waits for its reply.
    pub async fn call<C: Command>(&self, command: &C) -> Result<C::Reply, BusError> {
        self.ready(C::SERVICE).await?;
        self.bus.call(command).await
    }

    /// [`Client::call`] for a command that does all its work before it replies.
    pub async fn call_with_timeout<C: Command>(&self, command: &C, timeout: Duration) -> Result<C::Reply, BusError> {
        self.ready(C::SERVICE).await?;
        self.bus.call_with_timeout(command, timeout).await
    }

    /// Waits until `service` is online (up to `--wait` while it says `starting`);
    /// `unavailable` when it is offline, or never announced itself.
    pub async fn ready(&self, service: &str) -> Result<(), BusError> {
        let mut rx = self.liveness.clone();
        let started = tokio::time::Instant::now();
        loop {
            let now = rx.borrow_and_update().get(service).copied();
            let limit = match now {
                Some(Liveness::Online) => return Ok(()),
                Some(Liveness::Offline) => {
                    return Err(BusError::unavailable(format!(
                        "the {service} service is not running (offline)"
                    )));
                }
                Some(Liveness::Starting) => self.wait,
                None => UNANNOUNCED_GRACE.min(self.wait),
            };
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(BusError::unavailable(match now {
                    Some(_) => format!(
                        "the {service} service is still starting after {:?}; try again",
                        self.wait
                    ),
                    None => format!("the {service} service is not running"),
                }));
            }
            if let Ok(Err(_)) = tokio::time::timeout(left, rx.changed()).await {
                // No more liveness news: wait out the limit once, then decide.
                tokio::time::sleep(left).await;
            }
        }
    }

    /// What `service`'s liveness says right now.
    pub fn liveness_of(&self, service: &str) -> Option<Liveness> {
        self.liveness.borrow().get(service).copied()
    }

    /// A handle that follows every service's liveness.
    pub fn watch_liveness(&self) -> watch::Receiver<HashMap<String, Liveness>> {
        self.liveness.clone()
    }

    /// How long to wait for the system.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    pub async fn shutdown(self) {
        self.bus.shutdown().await;
    }
}

/// Adds what to do next to an error's message.
fn hint(mut e: BusError, what: &str) -> BusError {
    e.message = format!("{}; {what}", e.message);
    e
}

/// The session `cubeos login` keeps.
#[derive(Serialize, Deserialize)]
pub struct SavedLogin {
    /// The gate as the user gave it: `host:port`, a name or an address.
    pub gate: String,
    pub username: String,
    pub token: String,
    pub expires_at: Option<i64>,
}

impl SavedLogin {
    /// The saved session, if there is a readable one.
    pub fn load() -> Option<SavedLogin> {
        let bytes = std::fs::read(login_path().ok()?).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// `$XDG_CONFIG_HOME/cubeos/login.json` (or `~/.config/...`).
pub fn login_path() -> Result<PathBuf, BusError> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or_else(|| BusError::bad_request("neither XDG_CONFIG_HOME nor HOME is set"))?;
    Ok(base.join("cubeos").join("login.json"))
}

/// Connects through the gate at `gate` with a password or token (both empty: a
/// connection that may only sign in, or run first-boot setup).
pub async fn connect_gate(
    config: &Config,
    gate: std::net::SocketAddr,
    username: &str,
    secret: &str,
) -> Result<Bus, BusError> {
    let mut options = BusOptions::new(config, client_id(), username, secret);
    options.address = gate;
    Bus::connect(options).await.map_err(|e| match e.code {
        cubeos_kit::ErrorCode::Unavailable if !e.message.contains("sign-in") => {
            hint(e, "is `cubeos up` running there?")
        }
        _ => e,
    })
}

/// A client id of this process's own, `cli-<random>`.
fn client_id() -> String {
    format!("cli-{:016x}", rand::random::<u64>())
}

/// A word of the contract given on the command line (a role, a token kind), read
/// as its type; anything else is `bad_request` naming the argument.
pub fn parse_word<T: serde::de::DeserializeOwned>(what: &str, word: &str) -> Result<T, BusError> {
    serde_json::from_value(serde_json::Value::String(word.to_owned()))
        .map_err(|e| BusError::bad_request(format!("{what}: {e}")))
}

/// Reads a password: one line of stdin with `--password-stdin`, else a prompt
/// without echo.
pub fn read_password(prompt: &str, from_stdin: bool) -> Result<String, BusError> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| BusError::bad_request(format!("cannot read the password: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        rpassword::prompt_password(prompt)
            .map_err(|e| BusError::bad_request(format!("cannot read the password: {e}")))?
    };
    if password.is_empty() {
        return Err(BusError::bad_request("empty password"));
    }
    Ok(password)
}
