//! `cubeos setup`, `cubeos login`, `cubeos logout`.
//!
//! Signing in happens on a connection without credentials, which the gate lets in
//! for that alone: the password is checked once (by `auth.login`, not also by the
//! CONNECT), and a refusal comes back with its reason, such as a lockout and how
//! long it lasts, which a CONNACK code cannot carry.

use std::net::SocketAddr;

use cubeos_contract::api::registry::{AuthLogin, AuthLogout, Session, Setup, SetupStatus};
use cubeos_contract::secret::Secret;
use cubeos_kit::{BusError, private_file, secrets};

use super::{Cli, Client, SavedLogin, connect_gate, login_path, read_password};
use crate::output;

/// How long to ask a gate whether setup is done, when telling someone what to run.
const SETUP_PROBE: std::time::Duration = std::time::Duration::from_secs(2);

/// Who signs in, and where.
#[derive(clap::Args)]
pub struct SignIn {
    #[arg(short, long)]
    pub username: String,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// The gate, as `host:port` (default: `gate.address`).
    #[arg(long)]
    pub gate: Option<String>,
}

/// `host:port` (a name or an address) as a socket address; IPv4 first, as the gate
/// listens on `0.0.0.0` by default.
pub async fn resolve(gate: &str) -> Result<SocketAddr, BusError> {
    let bad = |why: String| BusError::bad_request(format!("--gate {gate}: {why}"));
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(gate)
        .await
        .map_err(|e| bad(format!("{e} (expected host:port)")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| bad("the name has no address".into()))
}

/// The gate `--gate` names, or the configured one.
fn gate_of(cli: &Cli, gate: Option<String>) -> String {
    gate.unwrap_or_else(|| cli.config.gate.address.to_string())
}

/// `cubeos setup`: creates the first admin. On the box it runs locally; elsewhere
/// it goes through the gate, which lets clients without credentials run it until
/// setup is done. Through the gate, the new admin is also signed in.
pub async fn setup(cli: &Cli, who: SignIn) -> anyhow::Result<()> {
    let SignIn {
        username,
        password_stdin,
        gate,
    } = who;
    let password = read_password("Password for the first admin: ", password_stdin)?;
    let local = gate.is_none() && cubeos_broker::Credentials::load(&cli.config.credentials_path()).is_ok();
    if local {
        let client = Client::connect(cli).await?;
        let args = Setup {
            username: username.clone(),
            password: Secret::new(password),
        };
        let result = client.call(&args).await;
        client.shutdown().await;
        result?;
        output::line(&format!("setup complete: {username} is the first admin"));
        return Ok(());
    }
    let gate = gate_of(cli, gate);
    let bus = connect_gate(&cli.config, resolve(&gate).await?, "", "").await?;
    let result = bus
        .call(&Setup {
            username: username.clone(),
            password: Secret::new(password),
        })
        .await;
    bus.shutdown().await;
    let session = result.map_err(|e| match e.code {
        cubeos_kit::ErrorCode::Conflict => {
            BusError::conflict(format!("{}: sign in with `cubeos login -u <name>`", e.message))
        }
        _ => e,
    })?;
    save(&gate, &username, &session)?;
    output::line(&format!("setup complete: {username} is the first admin, and signed in"));
    Ok(())
}

/// `cubeos login`: signs in at the gate and keeps the session token.
pub async fn login(cli: &Cli, who: SignIn) -> anyhow::Result<()> {
    let SignIn {
        username,
        password_stdin,
        gate,
    } = who;
    let gate = gate_of(cli, gate);
    let address = resolve(&gate).await?;
    let password = read_password(&format!("Password for {username}: "), password_stdin)?;
    let bus = connect_gate(&cli.config, address, "", "").await?;
    let result = bus
        .call(&AuthLogin {
            username: username.clone(),
            password: Secret::new(password),
        })
        .await;
    bus.shutdown().await;
    let session = result?;
    save(&gate, &username, &session)?;
    output::line(&format!("signed in as {username} ({})", session.role));
    Ok(())
}

/// `cubeos logout`: ends the session at the gate and forgets it here.
pub async fn logout(cli: &Cli) -> anyhow::Result<()> {
    let path = login_path()?;
    let Some(saved) = SavedLogin::load() else {
        output::line("not signed in");
        return Ok(());
    };
    // A session that has already ended is still forgotten here.
    if let Ok(gate) = resolve(&saved.gate).await
        && let Ok(bus) = connect_gate(&cli.config, gate, &saved.username, &saved.token).await
    {
        let _ = bus.call(&AuthLogout::default()).await;
        bus.shutdown().await;
    }
    std::fs::remove_file(&path).map_err(|e| BusError::internal(format!("cannot remove {}: {e}", path.display())))?;
    output::line(&format!("signed out {}", saved.username));
    Ok(())
}

/// Why a client with neither the service credentials nor a saved login cannot go
/// on, and what to run: `cubeos setup` on a box not set up yet (the configured gate
/// is asked), `cubeos login` otherwise.
pub async fn not_signed_in(cli: &Cli) -> BusError {
    let gate = cli.config.gate.address;
    let setup_complete = async {
        let bus = connect_gate(&cli.config, gate, "", "").await.ok()?;
        let reply = bus.call_with_timeout(&SetupStatus {}, SETUP_PROBE).await;
        bus.shutdown().await;
        Some(reply.ok()?.setup_complete)
    }
    .await;
    match setup_complete {
        Some(false) => BusError::unauthorized(format!(
            "CubeOS at {gate} is not set up yet: create the first admin with `cubeos setup -u <name> --gate {gate}`"
        )),
        _ => BusError::unauthorized(format!(
            "not signed in (the service credentials in {} are not readable here): run `cubeos login -u <name>`",
            cli.config.data_dir.display()
        )),
    }
}

fn save(gate: &str, username: &str, session: &Session) -> Result<(), BusError> {
    let token =
        secrets::reveal_plain(&session.token).ok_or_else(|| BusError::internal("the reply carries a sealed token"))?;
    let saved = SavedLogin {
        gate: gate.to_owned(),
        username: username.to_owned(),
        token: token.to_string(),
        expires_at: session.expires_at,
    };
    let path = login_path()?;
    let bytes = serde_json::to_vec_pretty(&saved).map_err(|e| BusError::internal(e.to_string()))?;
    private_file::write(&path, &bytes).map_err(|e| BusError::internal(format!("cannot write {}: {e}", path.display())))
}
