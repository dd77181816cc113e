//! Port reservations. `UNIQUE(port, protocol)` in the store is the arbiter: of any
//! number of concurrent reservations of one port exactly one commits, and the rest
//! learn which app holds it.

pub use cubeos_contract::api::registry::{
    HeldPort, PortList as PortFilter, PortRelease as Release, PortReserve as Reservation, PortSpec,
};
use cubeos_contract::models::{PortAllocation, Protocol};
use cubeos_contract::validate;
use sqlx::SqliteConnection;

use crate::apps;
use crate::error::{RegistryError, Result, is_unique_violation};
use crate::store::Store;

/// A [`PortSpec`] that passed validation.
#[derive(Debug, Clone)]
pub struct CheckedPort {
    pub port: u16,
    pub protocol: Protocol,
    pub description: String,
    pub is_primary: bool,
}

/// Checks a port as given.
pub fn checked(spec: &PortSpec) -> Result<CheckedPort> {
    let port = validate::port("port", spec.port)?;
    let description = spec.description.clone().unwrap_or_default();
    validate::text("description", &description, apps::MAX_SHORT)?;
    Ok(CheckedPort {
        port,
        protocol: spec.protocol.unwrap_or(Protocol::Tcp),
        description,
        is_primary: spec.is_primary.unwrap_or(false),
    })
}

/// Inserts one reservation inside a transaction; a taken port is `PortHeld`.
pub async fn insert(conn: &mut SqliteConnection, app_id: i64, spec: &CheckedPort) -> Result<PortAllocation> {
    let inserted = sqlx::query_as::<_, PortAllocation>(
        "INSERT INTO port_allocations (app_id, port, protocol, description, is_primary)
         VALUES (?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(app_id)
    .bind(i64::from(spec.port))
    .bind(spec.protocol)
    .bind(&spec.description)
    .bind(spec.is_primary)
    .fetch_one(&mut *conn)
    .await;
    match inserted {
        Ok(row) => Ok(row),
        Err(e) if is_unique_violation(&e) => {
            let app = sqlx::query_scalar::<_, String>(
                "SELECT a.name FROM port_allocations p JOIN apps a ON a.id = p.app_id
                 WHERE p.port = ? AND p.protocol = ?",
            )
            .bind(i64::from(spec.port))
            .bind(spec.protocol)
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or_else(|| "unknown".into());
            Err(RegistryError::PortHeld {
                port: spec.port.into(),
                protocol: spec.protocol.to_string(),
                app,
            })
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn reserve(store: &Store, r: Reservation) -> Result<PortAllocation> {
    validate::name("app", &r.app)?;
    let spec = checked(&r.spec)?;
    let mut tx = store.writer.begin().await?;
    let app = apps::find(&mut *tx, &r.app).await?;
    let row = insert(&mut tx, app.id, &spec).await?;
    tx.commit().await?;
    Ok(row)
}

/// Releases the matching reservations of an app; none matching is `not_found`.
pub async fn release(store: &Store, r: Release) -> Result<Vec<PortAllocation>> {
    validate::name("app", &r.app)?;
    let port = r.port.map(|p| validate::port("port", p)).transpose()?;
    let mut tx = store.writer.begin().await?;
    let app = apps::find(&mut *tx, &r.app).await?;
    let released = sqlx::query_as::<_, PortAllocation>(
        "DELETE FROM port_allocations
         WHERE app_id = ?1 AND (?2 IS NULL OR port = ?2) AND (?3 IS NULL OR protocol = ?3)
         RETURNING *",
    )
    .bind(app.id)
    .bind(port.map(i64::from))
    .bind(r.protocol)
    .fetch_all(&mut *tx)
    .await?;
    if released.is_empty() {
        let what = match (port, r.protocol) {
            (Some(p), Some(proto)) => format!("{p}/{proto}"),
            (Some(p), None) => p.to_string(),
            _ => "any port".into(),
        };
        return Err(RegistryError::NotFound {
            what: "reservation",
            name: format!("{what} of app {}", r.app),
        });
    }
    tx.commit().await?;
    Ok(released)
}

pub async fn list(store: &Store, filter: &PortFilter) -> Result<Vec<HeldPort>> {
    if let Some(app) = &filter.app {
        validate::name("app", app)?;
    }
    Ok(sqlx::query_as::<_, HeldPort>(
        "SELECT p.*, a.name AS app FROM port_allocations p JOIN apps a ON a.id = p.app_id
         WHERE (?1 IS NULL OR a.name = ?1) ORDER BY p.port, p.protocol",
    )
    .bind(&filter.app)
    .fetch_all(&store.reader)
    .await?)
}
