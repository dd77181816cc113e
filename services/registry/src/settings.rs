//! Key/value settings: `system_state` (flags the system keeps about itself) and
//! `preferences` (what people chose). Same shape, same rules.

use std::collections::BTreeMap;

use cubeos_contract::models::Setting;
use cubeos_contract::validate;

use crate::error::{RegistryError, Result};
use crate::store::Store;

pub const MAX_VALUE: usize = 4096;

/// Keys no command may change: they are kept in step by the registry itself.
/// `setup_complete` is set by `setup` alone: setting it back to false would let an
/// anonymous client create an admin.
const READ_ONLY_STATE: &[&str] = &["schema_version", "setup_complete"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    SystemState,
    Preferences,
}

/// The statements, spelled out per table: SQL is never assembled at run time.
struct Statements {
    get: &'static str,
    all: &'static str,
    upsert: &'static str,
    delete: &'static str,
}

impl Table {
    fn sql(self) -> &'static Statements {
        match self {
            Table::SystemState => &Statements {
                get: "SELECT * FROM system_state WHERE key = ?",
                all: "SELECT * FROM system_state ORDER BY key",
                upsert: "INSERT INTO system_state (key, value) VALUES (?1, ?2)
                         ON CONFLICT(key) DO UPDATE SET value = ?2, updated_at = CURRENT_TIMESTAMP RETURNING *",
                delete: "DELETE FROM system_state WHERE key = ? RETURNING *",
            },
            Table::Preferences => &Statements {
                get: "SELECT * FROM preferences WHERE key = ?",
                all: "SELECT * FROM preferences ORDER BY key",
                upsert: "INSERT INTO preferences (key, value) VALUES (?1, ?2)
                         ON CONFLICT(key) DO UPDATE SET value = ?2, updated_at = CURRENT_TIMESTAMP RETURNING *",
                delete: "DELETE FROM preferences WHERE key = ? RETURNING *",
            },
        }
    }
}

pub async fn get(store: &Store, table: Table, key: &str) -> Result<Setting> {
    validate::key("key", key)?;
    sqlx::query_as::<_, Setting>(table.sql().get)
        .bind(key)
        .fetch_optional(&store.reader)
        .await?
        .ok_or_else(|| RegistryError::NotFound {
            what: "setting",
            name: key.to_owned(),
        })
}

pub async fn all(store: &Store, table: Table) -> Result<BTreeMap<String, String>> {
    let rows = sqlx::query_as::<_, Setting>(table.sql().all)
        .fetch_all(&store.reader)
        .await?;
    Ok(rows.into_iter().map(|s| (s.key, s.value)).collect())
}

/// Sets `key` to `value` in `table`.
pub async fn set(store: &Store, table: Table, key: &str, value: &str) -> Result<Setting> {
    validate::key("key", key)?;
    validate::text("value", value, MAX_VALUE)?;
    if table == Table::SystemState {
        if READ_ONLY_STATE.contains(&key) {
            return Err(RegistryError::Protected(format!(
                "'{}' is kept by the registry and cannot be set",
                key
            )));
        }
        check_state_value(key, value)?;
    }
    Ok(sqlx::query_as::<_, Setting>(table.sql().upsert)
        .bind(key)
        .bind(value)
        .fetch_one(&store.writer)
        .await?)
}

/// Values other services build names, files and addresses from are checked for
/// what they are, not only as text: the proxy writes the domain into DNS and
/// nginx configuration and file names.
fn check_state_value(key: &str, value: &str) -> Result<()> {
    match key {
        "domain" => {
            validate::fqdn("value", value)?;
        }
        "gateway_ip" if value.parse::<std::net::IpAddr>().is_err() => {
            return Err(validate::FieldError::new("value", "gateway_ip must be an IP address").into());
        }
        _ => {}
    }
    Ok(())
}

pub async fn delete(store: &Store, table: Table, key: &str) -> Result<Setting> {
    validate::key("key", key)?;
    sqlx::query_as::<_, Setting>(table.sql().delete)
        .bind(key)
        .fetch_optional(&store.writer)
        .await?
        .ok_or_else(|| RegistryError::NotFound {
            what: "setting",
            name: key.to_owned(),
        })
}

/// Whether first-boot setup has created the first admin.
pub async fn setup_complete(store: &Store) -> Result<bool> {
    let value: Option<String> = sqlx::query_scalar("SELECT value FROM system_state WHERE key = 'setup_complete'")
        .fetch_optional(&store.reader)
        .await?;
    Ok(value.as_deref() == Some("true"))
}

/// Marks setup done, in the transaction that created the first admin.
pub async fn mark_setup_complete(tx: &mut sqlx::SqliteConnection) -> Result<()> {
    sqlx::query(
        "INSERT INTO system_state (key, value) VALUES ('setup_complete', 'true')
         ON CONFLICT(key) DO UPDATE SET value = 'true', updated_at = CURRENT_TIMESTAMP",
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Stamps `last_boot` with the current time (UTC) at registry start.
pub async fn mark_boot(store: &Store) -> Result<()> {
    sqlx::query(
        "INSERT INTO system_state (key, value) VALUES ('last_boot', datetime('now'))
         ON CONFLICT(key) DO UPDATE SET value = datetime('now'), updated_at = CURRENT_TIMESTAMP",
    )
    .execute(&store.writer)
    .await?;
    Ok(())
}
