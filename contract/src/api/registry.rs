//! The registry's commands: apps, ports, names, settings, profiles, sign-in,
//! users, tokens and the rows that hold secrets. Its state topics carry
//! [`AppRecord`](crate::models::AppRecord), [`ProfileRecord`] and the system
//! state as one object; its event [`Revoked`] tells the gate whom to disconnect.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Deleted, commands, no_args};
use crate::models::{
    AppRecord, AppSource, AppType, Fqdn, Mount, NetworkConfig, NetworkMode, PortAllocation, ProfileRecord, Protocol,
    Role, Setting, User, VpnConfig,
};
use crate::secret::Secret;
use crate::topics::service::REGISTRY;

commands! { REGISTRY;
    AppCreate = "app.create", Admin => AppRecord;
    AppGet = "app.get", Readonly => AppRecord;
    AppList = "app.list", Readonly => Vec<AppRecord>;
    AppUpdate = "app.update", Admin => AppRecord;
    AppDelete = "app.delete", Admin => Deleted;
    PortReserve = "port.reserve", Admin => PortAllocation;
    PortRelease = "port.release", Admin => Released;
    PortList = "port.list", Readonly => Vec<HeldPort>;
    FqdnAdd = "fqdn.add", Admin => Fqdn;
    FqdnSetProxyId = "fqdn.set_proxy_id", Admin => Fqdn;
    FqdnRemove = "fqdn.remove", Admin => Fqdn;
    StateGet = "state.get", Readonly => Settings;
    StateSet = "state.set", Admin => Setting;
    PrefGet = "pref.get", Readonly => Settings;
    PrefSet = "pref.set", Admin => Setting;
    PrefDelete = "pref.delete", Admin => Setting;
    ProfileList = "profile.list", Readonly => Vec<ProfileRecord>;
    ProfileGet = "profile.get", Readonly => ProfileRecord;
    ProfileCreate = "profile.create", Admin => ProfileRecord;
    ProfileUpdate = "profile.update", Admin => ProfileRecord;
    ProfileDelete = "profile.delete", Admin => Deleted;
    ProfileSetApps = "profile.set_apps", Admin => ProfileRecord;
    AuthConnect = "auth.connect", System => Granted;
    AuthLogin = "auth.login", SignIn => Session;
    AuthRefresh = "auth.refresh", Readonly => Refreshed;
    AuthLogout = "auth.logout", Readonly => LoggedOut;
    Setup = "setup", Setup => Session;
    SetupStatus = "setup.status", SignIn => SetupState;
    UserAdd = "user.add", Admin => User;
    UserList = "user.list", Admin => Vec<User>;
    UserDelete = "user.delete", Admin => Deleted;
    UserPasswd = "user.passwd", Readonly => PasswordChanged;
    UserRole = "user.role", Admin => User;
    TokenIssue = "token.issue", Admin => IssuedToken;
    TokenList = "token.list", Admin => Vec<TokenInfo>;
    TokenRevoke = "token.revoke", Admin => TokensRevoked;
    NetworkGet = "network.get", Readonly => NetworkView;
    NetworkSet = "network.set", Admin => NetworkView;
    MountAdd = "mount.add", Admin => Mount;
    MountList = "mount.list", Admin => Vec<Mount>;
    MountRemove = "mount.remove", Admin => Deleted;
    VpnAdd = "vpn.add", Admin => VpnConfig;
    VpnList = "vpn.list", Admin => Vec<VpnConfig>;
    VpnRemove = "vpn.remove", Admin => Deleted;
}

no_args! {
    ProfileList,
    AuthRefresh,
    SetupStatus,
    UserList,
    TokenList,
    NetworkGet,
    MountList,
    VpnList,
}

/// `app.create`: a new app with its ports and names.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppCreate {
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub app_type: Option<AppType>,
    pub category: Option<String>,
    pub source: Option<AppSource>,
    pub store_id: Option<String>,
    pub compose_path: Option<String>,
    pub data_path: Option<String>,
    pub enabled: Option<bool>,
    pub tor_enabled: Option<bool>,
    pub vpn_enabled: Option<bool>,
    pub icon_url: Option<String>,
    pub version: Option<String>,
    pub homepage: Option<String>,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub fqdns: Vec<FqdnSpec>,
}

/// `app.get`: one app by name.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppGet {
    pub name: String,
}

/// `app.list`: every app, optionally filtered.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppList {
    #[serde(rename = "type")]
    pub app_type: Option<AppType>,
    pub enabled: Option<bool>,
}

/// `app.update`: the fields to change. Name, ports and names have their own
/// commands.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppUpdate {
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub app_type: Option<AppType>,
    pub category: Option<String>,
    pub source: Option<AppSource>,
    pub store_id: Option<String>,
    pub compose_path: Option<String>,
    pub data_path: Option<String>,
    pub enabled: Option<bool>,
    pub tor_enabled: Option<bool>,
    pub vpn_enabled: Option<bool>,
    pub icon_url: Option<String>,
    pub version: Option<String>,
    pub homepage: Option<String>,
}

/// `app.delete`: an app with its ports and names.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppDelete {
    pub name: String,
}

/// A port as given in `app.create` or `port.reserve`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub port: i64,
    pub protocol: Option<Protocol>,
    pub description: Option<String>,
    pub is_primary: Option<bool>,
}

/// `port.reserve`: one port for an app.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortReserve {
    pub app: String,
    #[serde(flatten)]
    pub spec: PortSpec,
}

/// `port.release`: one port, or every port of the app when `port` is absent.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRelease {
    pub app: String,
    pub port: Option<i64>,
    pub protocol: Option<Protocol>,
}

/// The reply to `port.release`: the reservations that ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Released {
    pub released: Vec<PortAllocation>,
}

/// `port.list`: every reservation, or one app's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortList {
    pub app: Option<String>,
}

/// A reservation with the name of the app holding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct HeldPort {
    #[cfg_attr(feature = "sqlx", sqlx(flatten))]
    #[serde(flatten)]
    pub allocation: PortAllocation,
    pub app: String,
}

/// A name as given in `app.create` or `fqdn.add`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FqdnSpec {
    pub fqdn: String,
    pub backend_port: i64,
    pub ssl_enabled: Option<bool>,
}

/// `fqdn.add`: a name for an app.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FqdnAdd {
    pub app: String,
    #[serde(flatten)]
    pub spec: FqdnSpec,
}

/// `fqdn.set_proxy_id`: the reverse proxy's id for a name's host (or none).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FqdnSetProxyId {
    pub fqdn: String,
    pub npm_proxy_id: Option<i64>,
}

/// `fqdn.remove`: one name.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FqdnRemove {
    pub fqdn: String,
}

/// `state.get`: one key of the system state, or all of it when absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateGet {
    pub key: Option<String>,
}

/// `state.set`: one key of the system state.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateSet {
    pub key: String,
    pub value: String,
}

/// `pref.get`: one preference, or all of them when absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrefGet {
    pub key: Option<String>,
}

/// `pref.set`: one preference.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrefSet {
    pub key: String,
    pub value: String,
}

/// `pref.delete`: one preference.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrefDelete {
    pub key: String,
}

/// The reply to `state.get` / `pref.get`: the row asked for, or every key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Settings {
    One(Setting),
    All(BTreeMap<String, String>),
}

/// `profile.get`: one profile.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileGet {
    pub name: String,
}

/// `profile.create`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileCreate {
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
}

/// `profile.update`: the fields to change.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// `true` makes this the one active profile.
    pub is_active: Option<bool>,
}

/// `profile.delete`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileDelete {
    pub name: String,
}

/// `profile.set_apps`: the profile's whole app set, app name -> enabled.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileSetApps {
    pub name: String,
    pub apps: BTreeMap<String, bool>,
}

/// `auth.connect`: the gate asks who a CONNECT's credentials belong to.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConnect {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub address: Option<String>,
}

/// Who a CONNECT signed in as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Granted {
    pub user: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// `auth.login`: a password for a session token.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthLogin {
    pub username: String,
    pub password: Secret,
}

/// A new session: the reply to `auth.login` and `setup`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// The session's token id (not secret: it names the session).
    pub session: String,
    pub token: Secret,
    pub expires_at: Option<i64>,
    /// Seconds it lasts, by the box's clock: a client whose clock is off (a box
    /// without a real-time clock) schedules its refresh by this.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// The reply to `auth.refresh`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Refreshed {
    pub session: String,
    pub token: Secret,
    pub expires_at: Option<i64>,
    /// Seconds it lasts, by the box's clock (see [`Session::expires_in`]).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// `auth.logout`: ends the caller's session, or every session of the user.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthLogout {
    #[serde(default)]
    pub all: bool,
}

/// The reply to `auth.logout`: how many sessions ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LoggedOut {
    pub ended: usize,
}

/// `setup`: the first admin, once.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    pub username: String,
    pub password: Secret,
}

/// The reply to `setup.status`: whether first-boot setup is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SetupState {
    pub setup_complete: bool,
}

/// `user.add`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserAdd {
    pub username: String,
    pub password: Secret,
    #[serde(default = "default_role")]
    pub role: Role,
}

fn default_role() -> Role {
    Role::Readonly
}

/// `user.delete`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserDelete {
    pub username: String,
}

/// `user.passwd`: a new password (the caller's own when `username` is absent).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPasswd {
    pub username: Option<String>,
    pub password: Secret,
    /// Required when changing one's own password (admins setting another's need not).
    pub current_password: Option<Secret>,
}

/// The reply to `user.passwd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PasswordChanged {
    pub user: String,
    pub sessions_ended: usize,
}

/// `user.role`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRole {
    pub username: String,
    pub role: Role,
}

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "TEXT", rename_all = "snake_case"))]
pub enum TokenKind {
    Session,
    Device,
    Node,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Session => "session",
            TokenKind::Device => "device",
            TokenKind::Node => "node",
        }
    }
}

/// `token.issue`: a device or node credential.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenIssue {
    pub kind: TokenKind,
    /// The device or node id the credential is bound to.
    pub id: String,
}

/// The reply to `token.issue`: the only time the token exists outside the client.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IssuedToken {
    pub id: String,
    pub kind: TokenKind,
    pub subject: String,
    pub token: Secret,
}

/// A token as listed (never its hash).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct TokenInfo {
    pub id: String,
    pub kind: TokenKind,
    pub subject: String,
    #[serde(skip)]
    pub user_id: Option<i64>,
    pub expires_at: Option<i64>,
    pub created_at: String,
}

/// `token.revoke`: a token by its id, or every credential of a device or node by
/// its name.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRevoke {
    pub id: String,
}

/// The reply to `token.revoke`: the ids of the tokens revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokensRevoked {
    pub revoked: Vec<String>,
}

/// The event `cubeos/events/auth/revoked`: sessions and users whose live
/// connections the gate ends. Ids and names only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Revoked {
    #[serde(default)]
    pub sessions: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
}

/// `network.set`: the fields to change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSet {
    pub mode: Option<NetworkMode>,
    pub wifi_ssid: Option<String>,
    pub wifi_password: Option<Secret>,
    pub eth_interface: Option<String>,
    pub wifi_ap_interface: Option<String>,
    pub wifi_client_interface: Option<String>,
}

/// The network configuration as replies show it: whether a WiFi password is set,
/// never the password.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetworkView {
    #[serde(flatten)]
    pub config: NetworkConfig,
    pub wifi_password_set: bool,
}

/// `mount.add`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MountAdd {
    pub name: String,
    #[serde(rename = "type")]
    pub mount_type: String,
    pub remote_path: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: Secret,
    #[serde(default)]
    pub options: String,
    #[serde(default)]
    pub auto_mount: bool,
}

/// `mount.remove`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MountRemove {
    pub name: String,
}

/// `vpn.add`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VpnAdd {
    pub name: String,
    #[serde(rename = "type")]
    pub vpn_type: String,
    /// The private key or credentials.
    #[serde(default)]
    pub secret: Secret,
    #[serde(default)]
    pub auto_connect: bool,
}

/// `vpn.remove`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VpnRemove {
    pub name: String,
}
