//! Names (`<app>.<domain>`) that DNS and the reverse proxy serve for an app.

pub use cubeos_contract::api::registry::{FqdnAdd as NewFqdn, FqdnSetProxyId as ProxyId, FqdnSpec};
use cubeos_contract::models::Fqdn;
use cubeos_contract::validate;
use sqlx::SqliteConnection;

use crate::apps;
use crate::error::{RegistryError, Result, is_unique_violation};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct CheckedFqdn {
    pub fqdn: String,
    pub subdomain: String,
    pub backend_port: u16,
    pub ssl_enabled: bool,
}

/// Checks a name as given.
pub fn checked(spec: &FqdnSpec) -> Result<CheckedFqdn> {
    let fqdn = validate::fqdn("fqdn", &spec.fqdn)?;
    let subdomain = fqdn.split('.').next().unwrap_or_default().to_owned();
    Ok(CheckedFqdn {
        subdomain,
        fqdn,
        backend_port: validate::port("backend_port", spec.backend_port)?,
        ssl_enabled: spec.ssl_enabled.unwrap_or(false),
    })
}

pub async fn insert(conn: &mut SqliteConnection, app_id: i64, spec: &CheckedFqdn) -> Result<Fqdn> {
    let inserted = sqlx::query_as::<_, Fqdn>(
        "INSERT INTO fqdns (app_id, fqdn, subdomain, backend_port, ssl_enabled) VALUES (?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(app_id)
    .bind(&spec.fqdn)
    .bind(&spec.subdomain)
    .bind(i64::from(spec.backend_port))
    .bind(spec.ssl_enabled)
    .fetch_one(&mut *conn)
    .await;
    match inserted {
        Ok(row) => Ok(row),
        Err(e) if is_unique_violation(&e) => {
            let app = holder(conn, &spec.fqdn).await?.unwrap_or_else(|| "unknown".into());
            Err(RegistryError::FqdnHeld {
                fqdn: spec.fqdn.clone(),
                app,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The name of the app holding `fqdn`, if any.
async fn holder(conn: &mut SqliteConnection, fqdn: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT a.name FROM fqdns f JOIN apps a ON a.id = f.app_id WHERE f.fqdn = ?")
            .bind(fqdn)
            .fetch_optional(conn)
            .await?,
    )
}

fn not_found(fqdn: &str) -> RegistryError {
    RegistryError::NotFound {
        what: "fqdn",
        name: fqdn.to_owned(),
    }
}

pub async fn add(store: &Store, new: NewFqdn) -> Result<Fqdn> {
    validate::name("app", &new.app)?;
    let spec = checked(&new.spec)?;
    let mut tx = store.writer.begin().await?;
    let app = apps::find(&mut *tx, &new.app).await?;
    let row = insert(&mut tx, app.id, &spec).await?;
    tx.commit().await?;
    Ok(row)
}

/// Removes a name; returns it with the name of the app that had it.
pub async fn remove(store: &Store, fqdn: &str) -> Result<(Fqdn, String)> {
    let fqdn = validate::fqdn("fqdn", fqdn)?;
    let mut tx = store.writer.begin().await?;
    let app = holder(&mut tx, &fqdn).await?.ok_or_else(|| not_found(&fqdn))?;
    let row = sqlx::query_as::<_, Fqdn>("DELETE FROM fqdns WHERE fqdn = ? RETURNING *")
        .bind(&fqdn)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((row, app))
}

/// Records (or clears) the NPM proxy host id of a name; returns the row and its app.
pub async fn set_proxy_id(store: &Store, set: ProxyId) -> Result<(Fqdn, String)> {
    let fqdn = validate::fqdn("fqdn", &set.fqdn)?;
    if set.npm_proxy_id.is_some_and(|id| id < 1) {
        return Err(validate::FieldError::new("npm_proxy_id", "must be a positive id").into());
    }
    let mut tx = store.writer.begin().await?;
    let row = sqlx::query_as::<_, Fqdn>("UPDATE fqdns SET npm_proxy_id = ? WHERE fqdn = ? RETURNING *")
        .bind(set.npm_proxy_id)
        .bind(&fqdn)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found(&fqdn))?;
    let app = sqlx::query_scalar::<_, String>("SELECT name FROM apps WHERE id = ?")
        .bind(row.app_id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((row, app))
}
