//! The rows that hold secrets: the network configuration (the WiFi password), network
//! mounts (SMB / NFS passwords) and VPN configurations (private keys).
//!
//! Secrets are stored sealed with the data dir's key ([`SecretBox::at_rest`]) and
//! never returned: replies say only whether one is set. Whoever uses a secret — the
//! network-mode service bringing WiFi up, a mount — reads the row from the store
//! and opens it there with the data dir's key ([`SecretBox::open`]).

use cubeos_contract::models::{Mount, NetworkConfig, VpnConfig};
use cubeos_contract::validate;
use cubeos_kit::secrets::SecretBox;

pub use cubeos_contract::api::registry::{
    MountAdd as NewMount, NetworkSet as NetworkChanges, NetworkView, VpnAdd as NewVpn,
};

use crate::error::{RegistryError, Result};
use crate::store::Store;

/// The network configuration as replies show it.
pub fn network_view(config: NetworkConfig) -> NetworkView {
    NetworkView {
        wifi_password_set: !config.wifi_password.is_empty(),
        config,
    }
}

pub async fn network(store: &Store) -> Result<NetworkConfig> {
    Ok(
        sqlx::query_as::<_, NetworkConfig>("SELECT * FROM network_config WHERE id = 1")
            .fetch_one(&store.reader)
            .await?,
    )
}

pub async fn set_network(store: &Store, key: &SecretBox, changes: NetworkChanges) -> Result<NetworkConfig> {
    for (field, value) in [
        ("wifi_ssid", &changes.wifi_ssid),
        ("eth_interface", &changes.eth_interface),
        ("wifi_ap_interface", &changes.wifi_ap_interface),
        ("wifi_client_interface", &changes.wifi_client_interface),
    ] {
        if let Some(v) = value {
            validate::text(field, v, 64)?;
        }
    }
    let password = changes.wifi_password.as_ref().map(|p| key.at_rest(p)).transpose()?;
    Ok(sqlx::query_as::<_, NetworkConfig>(
        "UPDATE network_config SET
            mode = COALESCE(?, mode), wifi_ssid = COALESCE(?, wifi_ssid),
            wifi_password = COALESCE(?, wifi_password), eth_interface = COALESCE(?, eth_interface),
            wifi_ap_interface = COALESCE(?, wifi_ap_interface),
            wifi_client_interface = COALESCE(?, wifi_client_interface),
            updated_at = CURRENT_TIMESTAMP
         WHERE id = 1 RETURNING *",
    )
    .bind(changes.mode)
    .bind(changes.wifi_ssid)
    .bind(password)
    .bind(changes.eth_interface)
    .bind(changes.wifi_ap_interface)
    .bind(changes.wifi_client_interface)
    .fetch_one(&store.writer)
    .await?)
}

pub async fn add_mount(store: &Store, key: &SecretBox, mounts_dir: &std::path::Path, new: NewMount) -> Result<Mount> {
    validate::name("name", &new.name)?;
    validate::one_of("type", &new.mount_type, &["smb", "nfs"])?;
    validate::text("remote_path", &new.remote_path, 512)?;
    validate::text("username", &new.username, 128)?;
    validate::text("options", &new.options, 512)?;
    let local_path = mounts_dir.join(&new.name);
    sqlx::query_as::<_, Mount>(
        "INSERT INTO mounts (name, type, remote_path, local_path, username, password, options, auto_mount)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(&new.name)
    .bind(&new.mount_type)
    .bind(&new.remote_path)
    .bind(local_path.to_string_lossy())
    .bind(&new.username)
    .bind(key.at_rest(&new.password)?)
    .bind(&new.options)
    .bind(new.auto_mount)
    .fetch_one(&store.writer)
    .await
    .map_err(|e| exists_or(e, "mount", &new.name))
}

pub async fn mounts(store: &Store) -> Result<Vec<Mount>> {
    Ok(sqlx::query_as::<_, Mount>("SELECT * FROM mounts ORDER BY name")
        .fetch_all(&store.reader)
        .await?)
}

pub async fn add_vpn(store: &Store, key: &SecretBox, vpn_dir: &std::path::Path, new: NewVpn) -> Result<VpnConfig> {
    validate::name("name", &new.name)?;
    validate::one_of("type", &new.vpn_type, &["wireguard", "openvpn"])?;
    // Where the VPN service writes the opened configuration while the VPN is up.
    let config_path = vpn_dir.join(format!("{}.conf", new.name));
    sqlx::query_as::<_, VpnConfig>(
        "INSERT INTO vpn_configs (name, type, config_path, auto_connect, secret) VALUES (?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(&new.name)
    .bind(&new.vpn_type)
    .bind(config_path.to_string_lossy())
    .bind(new.auto_connect)
    .bind(key.at_rest(&new.secret)?)
    .fetch_one(&store.writer)
    .await
    .map_err(|e| exists_or(e, "vpn", &new.name))
}

pub async fn vpns(store: &Store) -> Result<Vec<VpnConfig>> {
    Ok(
        sqlx::query_as::<_, VpnConfig>("SELECT * FROM vpn_configs ORDER BY name")
            .fetch_all(&store.reader)
            .await?,
    )
}

/// Deletes a mount or VPN row by name.
pub async fn remove(store: &Store, table: Table, name: &str) -> Result<()> {
    let sql = match table {
        Table::Mounts => "DELETE FROM mounts WHERE name = ?",
        Table::Vpns => "DELETE FROM vpn_configs WHERE name = ?",
    };
    let done = sqlx::query(sql).bind(name).execute(&store.writer).await?;
    if done.rows_affected() == 0 {
        return Err(RegistryError::NotFound {
            what: table.what(),
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub enum Table {
    Mounts,
    Vpns,
}

impl Table {
    fn what(self) -> &'static str {
        match self {
            Table::Mounts => "mount",
            Table::Vpns => "vpn",
        }
    }
}

fn exists_or(e: sqlx::Error, what: &'static str, name: &str) -> RegistryError {
    if crate::error::is_unique_violation(&e) {
        RegistryError::AlreadyExists {
            what,
            name: name.to_owned(),
        }
    } else {
        e.into()
    }
}
