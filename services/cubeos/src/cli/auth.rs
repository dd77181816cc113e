//! `cubeos setup`, `cubeos login`, `cubeos logout`.

use std::net::SocketAddr;

use anyhow::Context;
use cubeos_shared::Config;
use cubeos_shared::private_file;
use cubeos_shared::topics::service::REGISTRY;
use serde_json::{Value, json};

use super::{SavedLogin, connect_gate, login_path, rand_id, read_password};
use crate::output;

/// Who signs in, and where.
#[derive(clap::Args)]
pub struct SignIn {
    #[arg(short, long)]
    pub username: String,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// The gate's address (default: `gate.address`).
    #[arg(long)]
    pub gate: Option<SocketAddr>,
}

/// `cubeos setup`: creates the first admin. On the box it runs locally; elsewhere
/// it goes through the gate, which lets anonymous clients in only for this, and
/// only until setup is done. Through the gate, the new admin is also signed in.
pub async fn setup(config: &Config, who: SignIn) -> anyhow::Result<()> {
    let SignIn {
        username,
        password_stdin,
        gate,
    } = who;
    let password = read_password("Password for the first admin: ", password_stdin)?;
    let local = gate.is_none() && cubeos_broker::Credentials::load(&config.credentials_path()).is_ok();
    if local {
        let client = super::connect_client(config).await?;
        let args = json!({ "username": username, "password": client.secret(&password)? });
        let result = client.bus.request(REGISTRY, "setup", &args).await;
        client.shutdown().await;
        result?;
        output::line(&format!("setup complete: {username} is the first admin"));
        return Ok(());
    }
    let gate = gate.unwrap_or(config.gate.address);
    // No username: an anonymous CONNECT, which the gate accepts only before setup.
    let bus = connect_gate(config, gate, format!("cli-{:016x}", rand_id()), "", "")
        .await
        .map_err(|e| anyhow::anyhow!("{e} (is setup already complete? then use `cubeos login`)"))?;
    let result = bus
        .request(
            REGISTRY,
            "setup",
            &json!({ "username": username, "password": password }),
        )
        .await;
    bus.shutdown().await;
    save(gate, &username, &result?)?;
    output::line(&format!("setup complete: {username} is the first admin, and signed in"));
    Ok(())
}

/// `cubeos login`: signs in at the gate and keeps the session token.
pub async fn login(config: &Config, who: SignIn) -> anyhow::Result<()> {
    let SignIn {
        username,
        password_stdin,
        gate,
    } = who;
    let gate = gate.unwrap_or(config.gate.address);
    let password = read_password(&format!("Password for {username}: "), password_stdin)?;
    let bus = connect_gate(config, gate, format!("cli-{:016x}", rand_id()), &username, &password).await?;
    let result = bus
        .request(
            REGISTRY,
            "auth.login",
            &json!({ "username": username, "password": password }),
        )
        .await;
    bus.shutdown().await;
    let session = result?;
    save(gate, &username, &session)?;
    output::line(&format!(
        "signed in as {username} ({})",
        session["role"].as_str().unwrap_or("?")
    ));
    Ok(())
}

/// `cubeos logout`: ends the session at the gate and forgets it here.
pub async fn logout(config: &Config) -> anyhow::Result<()> {
    let path = login_path()?;
    let Some(saved) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<SavedLogin>(&b).ok())
    else {
        output::line("not signed in");
        return Ok(());
    };
    let client_id = format!("cli-{:016x}", rand_id());
    // A session that has already ended is still forgotten here.
    if let Ok(bus) = connect_gate(config, saved.gate, client_id, &saved.username, &saved.token).await {
        let _ = bus.request(REGISTRY, "auth.logout", &json!({})).await;
        bus.shutdown().await;
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    output::line(&format!("signed out {}", saved.username));
    Ok(())
}

fn save(gate: SocketAddr, username: &str, session: &Value) -> anyhow::Result<()> {
    let saved = SavedLogin {
        gate,
        username: username.to_owned(),
        token: session["token"]
            .as_str()
            .context("the reply carries no token")?
            .to_owned(),
        expires_at: session["expires_at"].as_i64(),
    };
    let path = login_path()?;
    private_file::write(&path, &serde_json::to_vec_pretty(&saved)?)
        .with_context(|| format!("cannot write {}", path.display()))
}
