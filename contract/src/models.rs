//! One struct per table of the store (seed schema, `migrations/0001`), plus the
//! composite shapes published on the bus.
//!
//! Timestamps are SQLite's `CURRENT_TIMESTAMP` text (`YYYY-MM-DD HH:MM:SS`, UTC).
//! Secret columns (`network_config.wifi_password`, `mounts.password`,
//! `users.password_hash`) are `skip_serializing`: they can be read from the store by
//! the code that needs them but can never reach a reply, state topic or log line
//! through serde.

use serde::{Deserialize, Serialize};

/// `apps.type`: what an app is for; decides its port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "TEXT", rename_all = "lowercase"))]
pub enum AppType {
    System,
    Platform,
    Network,
    Ai,
    User,
}

impl AppType {
    /// The serde / SQL name.
    pub fn as_str(self) -> &'static str {
        match self {
            AppType::System => "system",
            AppType::Platform => "platform",
            AppType::Network => "network",
            AppType::Ai => "ai",
            AppType::User => "user",
        }
    }
}

/// `apps.source`: where an app came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "TEXT", rename_all = "lowercase"))]
pub enum AppSource {
    Cubeos,
    Casaos,
    Custom,
}

impl AppSource {
    /// The serde / SQL name.
    pub fn as_str(self) -> &'static str {
        match self {
            AppSource::Cubeos => "cubeos",
            AppSource::Casaos => "casaos",
            AppSource::Custom => "custom",
        }
    }
}

/// `port_allocations.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "TEXT", rename_all = "lowercase"))]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `users.role`: one of the person roles of [`crate::roles::Role`].
pub use crate::roles::Role;

/// `network_config.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "TEXT", rename_all = "snake_case"))]
pub enum NetworkMode {
    Offline,
    OnlineEth,
    OnlineWifi,
}

/// Where the box's dashboard serves an installed app's own icon. An app's
/// `icon_url` is this when the box has the icon (installed from a store copy that
/// had one); otherwise it is the file's (often an internet address an offline box
/// cannot reach), and the page draws a placeholder.
pub fn app_icon_url(name: &str) -> String {
    format!("/icons/app/{name}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct App {
    pub id: i64,
    pub name: String,
    pub display_name: String,
    pub description: String,
    #[cfg_attr(feature = "sqlx", sqlx(rename = "type"))]
    #[serde(rename = "type")]
    pub app_type: AppType,
    pub category: String,
    pub source: AppSource,
    pub store_id: Option<String>,
    pub compose_path: String,
    pub data_path: String,
    pub enabled: bool,
    pub tor_enabled: bool,
    pub vpn_enabled: bool,
    pub icon_url: String,
    pub version: String,
    pub homepage: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct PortAllocation {
    pub id: i64,
    pub app_id: i64,
    pub port: i64,
    pub protocol: Protocol,
    pub description: String,
    pub is_primary: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct Fqdn {
    pub id: i64,
    pub app_id: i64,
    pub fqdn: String,
    pub subdomain: String,
    pub backend_port: i64,
    pub ssl_enabled: bool,
    pub npm_proxy_id: Option<i64>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct Profile {
    pub id: i64,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub is_active: bool,
    pub is_system: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct ProfileApp {
    pub profile_id: i64,
    pub app_id: i64,
    pub enabled: bool,
}

/// A row of `system_state` or `preferences` (same shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct Setting {
    pub key: String,
    pub value: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct AppHealth {
    pub id: i64,
    pub app_id: i64,
    pub check_endpoint: String,
    pub check_interval: i64,
    pub check_timeout: i64,
    pub max_retries: i64,
    pub alert_after: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct NetworkConfig {
    pub id: i64,
    pub mode: NetworkMode,
    pub wifi_ssid: String,
    #[serde(skip_serializing, default)]
    pub wifi_password: String,
    pub eth_interface: String,
    pub wifi_ap_interface: String,
    pub wifi_client_interface: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct VpnConfig {
    pub id: i64,
    pub name: String,
    #[cfg_attr(feature = "sqlx", sqlx(rename = "type"))]
    #[serde(rename = "type")]
    pub vpn_type: String,
    pub config_path: String,
    pub is_active: bool,
    pub auto_connect: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Sealed private key / credentials (migration 0002).
    #[serde(skip_serializing, default)]
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct Mount {
    pub id: i64,
    pub name: String,
    #[cfg_attr(feature = "sqlx", sqlx(rename = "type"))]
    #[serde(rename = "type")]
    pub mount_type: String,
    pub remote_path: String,
    pub local_path: String,
    pub username: String,
    #[serde(skip_serializing, default)]
    pub password: String,
    pub options: String,
    pub auto_mount: bool,
    pub is_mounted: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct Backup {
    pub id: i64,
    pub name: String,
    pub destination: String,
    pub include_apps: String,
    pub schedule: String,
    pub retention_days: i64,
    pub last_run: Option<String>,
    pub last_status: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct User {
    pub id: i64,
    pub username: String,
    #[serde(skip_serializing, default)]
    pub password_hash: String,
    pub role: Role,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct Node {
    pub id: String,
    pub hostname: String,
    pub role: String,
    pub status: String,
    pub ip_address: Option<String>,
    pub joined_at: String,
    pub last_seen: String,
}

/// An app with its ports and names: the registry's reply shape and the payload of
/// `cubeos/state/apps/<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AppRecord {
    #[serde(flatten)]
    pub app: App,
    pub ports: Vec<PortAllocation>,
    pub fqdns: Vec<Fqdn>,
}

/// A profile with the apps it names: the payload of `cubeos/state/profiles/<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProfileRecord {
    #[serde(flatten)]
    pub profile: Profile,
    /// App name -> enabled in this profile.
    pub apps: std::collections::BTreeMap<String, bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names() {
        for t in [
            AppType::System,
            AppType::Platform,
            AppType::Network,
            AppType::Ai,
            AppType::User,
        ] {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for s in [AppSource::Cubeos, AppSource::Casaos, AppSource::Custom] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn secrets_never_serialise() {
        let user = User {
            id: 1,
            username: "ana".into(),
            password_hash: "$argon2id$secret".into(),
            role: Role::Admin,
            created_at: String::new(),
            updated_at: String::new(),
        };
        let json = serde_json::to_string(&user).unwrap();
        assert!(!json.contains("argon2id") && !json.contains("password_hash"), "{json}");

        let net = NetworkConfig {
            id: 1,
            mode: NetworkMode::OnlineWifi,
            wifi_ssid: "home".into(),
            wifi_password: "hunter22".into(),
            eth_interface: "eth0".into(),
            wifi_ap_interface: "wlan0".into(),
            wifi_client_interface: "wlan1".into(),
            updated_at: String::new(),
        };
        let json = serde_json::to_string(&net).unwrap();
        assert!(!json.contains("hunter22") && json.contains("online_wifi"), "{json}");
    }
}
