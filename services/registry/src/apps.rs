//! Apps with their ports and names: create, get, list, update, delete.

use std::collections::HashMap;
use std::path::Path;

pub use cubeos_contract::api::registry::{AppCreate as NewApp, AppList as AppFilter, AppUpdate as AppChanges};
use cubeos_contract::models::{App, AppRecord, AppSource, AppType, Fqdn, PortAllocation};
use cubeos_contract::validate;
use sqlx::{Sqlite, SqliteConnection, SqliteExecutor};

use crate::error::{RegistryError, Result, is_unique_violation};
use crate::store::Store;
use crate::{fqdns, ports};

/// Limits on free-text fields.
pub const MAX_DISPLAY_NAME: usize = 128;
pub const MAX_DESCRIPTION: usize = 4096;
pub const MAX_SHORT: usize = 256;
pub const MAX_URL: usize = 2048;
pub const MAX_PATH: usize = 1024;

/// A stored path: absolute, no `..`, bounded. The registry writes no files, but the
/// services that do trust these.
fn check_path(field: &str, value: &str) -> Result<()> {
    validate::text(field, value, MAX_PATH)?;
    let path = Path::new(value);
    let escapes = path.components().any(|c| matches!(c, std::path::Component::ParentDir));
    if !value.is_empty() && (!path.is_absolute() || escapes) {
        return Err(validate::FieldError::new(field, "must be an absolute path without '..'").into());
    }
    Ok(())
}

fn check_texts(
    display_name: Option<&str>,
    description: Option<&str>,
    category: Option<&str>,
    store_id: Option<&str>,
    icon_url: Option<&str>,
    version: Option<&str>,
    homepage: Option<&str>,
) -> Result<()> {
    if let Some(v) = display_name {
        validate::text("display_name", v, MAX_DISPLAY_NAME)?;
        if v.trim().is_empty() {
            return Err(validate::FieldError::new("display_name", "must not be empty").into());
        }
    }
    for (field, value, max) in [
        ("description", description, MAX_DESCRIPTION),
        ("category", category, MAX_SHORT),
        ("store_id", store_id, MAX_SHORT),
        ("icon_url", icon_url, MAX_URL),
        ("version", version, MAX_SHORT),
        ("homepage", homepage, MAX_URL),
    ] {
        if let Some(v) = value {
            validate::text(field, v, max)?;
        }
    }
    Ok(())
}

/// Where an app's files live by default: `<data>/apps/<name>/appconfig/docker-compose.yml`
/// and `<data>/apps/<name>/appdata`.
pub fn default_paths(data_dir: &Path, name: &str) -> (String, String) {
    let root = data_dir.join("apps").join(name);
    (
        root.join("appconfig").join("docker-compose.yml").display().to_string(),
        root.join("appdata").display().to_string(),
    )
}

pub async fn create(store: &Store, data_dir: &Path, new: NewApp) -> Result<AppRecord> {
    validate::name("name", &new.name)?;
    check_texts(
        new.display_name.as_deref(),
        new.description.as_deref(),
        new.category.as_deref(),
        new.store_id.as_deref(),
        new.icon_url.as_deref(),
        new.version.as_deref(),
        new.homepage.as_deref(),
    )?;
    let (default_compose, default_data) = default_paths(data_dir, &new.name);
    let compose_path = new.compose_path.unwrap_or(default_compose);
    let data_path = new.data_path.unwrap_or(default_data);
    check_path("compose_path", &compose_path)?;
    check_path("data_path", &data_path)?;
    let port_specs = new.ports.iter().map(ports::checked).collect::<Result<Vec<_>>>()?;
    let fqdn_specs = new.fqdns.iter().map(fqdns::checked).collect::<Result<Vec<_>>>()?;

    let mut tx = store.writer.begin().await?;
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO apps (name, display_name, description, type, category, source, store_id,
                           compose_path, data_path, enabled, tor_enabled, vpn_enabled,
                           icon_url, version, homepage)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&new.name)
    .bind(new.display_name.as_deref().unwrap_or(&new.name))
    .bind(new.description.unwrap_or_default())
    .bind(new.app_type.unwrap_or(AppType::User))
    .bind(new.category.unwrap_or_else(|| "other".into()))
    .bind(new.source.unwrap_or(AppSource::Custom))
    .bind(new.store_id)
    .bind(compose_path)
    .bind(data_path)
    .bind(new.enabled.unwrap_or(true))
    .bind(new.tor_enabled.unwrap_or(false))
    .bind(new.vpn_enabled.unwrap_or(false))
    .bind(new.icon_url.unwrap_or_default())
    .bind(new.version.unwrap_or_default())
    .bind(new.homepage.unwrap_or_default())
    .fetch_one(&mut *tx)
    .await;
    let app_id = match inserted {
        Ok(id) => id,
        Err(e) if is_unique_violation(&e) => {
            return Err(RegistryError::AlreadyExists {
                what: "app",
                name: new.name,
            });
        }
        Err(e) => return Err(e.into()),
    };
    for spec in &port_specs {
        ports::insert(&mut tx, app_id, spec).await?;
    }
    for spec in &fqdn_specs {
        fqdns::insert(&mut tx, app_id, spec).await?;
    }
    let record = load_record(&mut tx, &new.name).await?;
    tx.commit().await?;
    Ok(record)
}

pub async fn update(store: &Store, changes: AppChanges) -> Result<AppRecord> {
    validate::name("name", &changes.name)?;
    check_texts(
        changes.display_name.as_deref(),
        changes.description.as_deref(),
        changes.category.as_deref(),
        changes.store_id.as_deref(),
        changes.icon_url.as_deref(),
        changes.version.as_deref(),
        changes.homepage.as_deref(),
    )?;
    if let Some(p) = &changes.compose_path {
        check_path("compose_path", p)?;
    }
    if let Some(p) = &changes.data_path {
        check_path("data_path", p)?;
    }
    let mut tx = store.writer.begin().await?;
    let current = find(&mut *tx, &changes.name).await?;
    sqlx::query(
        "UPDATE apps SET display_name = ?, description = ?, type = ?, category = ?, source = ?,
                store_id = ?, compose_path = ?, data_path = ?, enabled = ?, tor_enabled = ?,
                vpn_enabled = ?, icon_url = ?, version = ?, homepage = ?,
                updated_at = CURRENT_TIMESTAMP
         WHERE id = ?",
    )
    .bind(changes.display_name.unwrap_or(current.display_name))
    .bind(changes.description.unwrap_or(current.description))
    .bind(changes.app_type.unwrap_or(current.app_type))
    .bind(changes.category.unwrap_or(current.category))
    .bind(changes.source.unwrap_or(current.source))
    .bind(changes.store_id.or(current.store_id))
    .bind(changes.compose_path.unwrap_or(current.compose_path))
    .bind(changes.data_path.unwrap_or(current.data_path))
    .bind(changes.enabled.unwrap_or(current.enabled))
    .bind(changes.tor_enabled.unwrap_or(current.tor_enabled))
    .bind(changes.vpn_enabled.unwrap_or(current.vpn_enabled))
    .bind(changes.icon_url.unwrap_or(current.icon_url))
    .bind(changes.version.unwrap_or(current.version))
    .bind(changes.homepage.unwrap_or(current.homepage))
    .bind(current.id)
    .execute(&mut *tx)
    .await?;
    let record = load_record(&mut tx, &changes.name).await?;
    tx.commit().await?;
    Ok(record)
}

/// Deletes an app; its ports, names, health settings and profile entries go with it
/// (ON DELETE CASCADE). Returns the names of the profiles that named it.
pub async fn delete(store: &Store, name: &str) -> Result<Vec<String>> {
    validate::name("name", name)?;
    let mut tx = store.writer.begin().await?;
    let app = find(&mut *tx, name).await?;
    let profiles = sqlx::query_scalar::<_, String>(
        "SELECT p.name FROM profiles p JOIN profile_apps pa ON pa.profile_id = p.id WHERE pa.app_id = ?",
    )
    .bind(app.id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM apps WHERE id = ?")
        .bind(app.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(profiles)
}

pub async fn get(store: &Store, name: &str) -> Result<AppRecord> {
    validate::name("name", name)?;
    let mut conn = store.reader.acquire().await?;
    load_record(&mut conn, name).await
}

pub async fn list(store: &Store, filter: &AppFilter) -> Result<Vec<AppRecord>> {
    let mut conn = store.reader.acquire().await?;
    let apps = sqlx::query_as::<_, App>(
        "SELECT * FROM apps WHERE (?1 IS NULL OR type = ?1) AND (?2 IS NULL OR enabled = ?2) ORDER BY name",
    )
    .bind(filter.app_type)
    .bind(filter.enabled)
    .fetch_all(&mut *conn)
    .await?;
    // Three queries for the whole list rather than two per app.
    let mut ports_by_app: HashMap<i64, Vec<PortAllocation>> = HashMap::new();
    for p in sqlx::query_as::<_, PortAllocation>("SELECT * FROM port_allocations ORDER BY port, protocol")
        .fetch_all(&mut *conn)
        .await?
    {
        ports_by_app.entry(p.app_id).or_default().push(p);
    }
    let mut fqdns_by_app: HashMap<i64, Vec<Fqdn>> = HashMap::new();
    for f in sqlx::query_as::<_, Fqdn>("SELECT * FROM fqdns ORDER BY fqdn")
        .fetch_all(&mut *conn)
        .await?
    {
        fqdns_by_app.entry(f.app_id).or_default().push(f);
    }
    Ok(apps
        .into_iter()
        .map(|app| AppRecord {
            ports: ports_by_app.remove(&app.id).unwrap_or_default(),
            fqdns: fqdns_by_app.remove(&app.id).unwrap_or_default(),
            app,
        })
        .collect())
}

/// The app row, or `not_found`.
pub async fn find<'e>(db: impl SqliteExecutor<'e>, name: &str) -> Result<App> {
    sqlx::query_as::<_, App>("SELECT * FROM apps WHERE name = ?")
        .bind(name)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| RegistryError::NotFound {
            what: "app",
            name: name.to_owned(),
        })
}

/// The app with its ports and names.
pub async fn load_record(conn: &mut SqliteConnection, name: &str) -> Result<AppRecord> {
    let app = find(&mut *conn, name).await?;
    let ports = sqlx::query_as::<Sqlite, PortAllocation>(
        "SELECT * FROM port_allocations WHERE app_id = ? ORDER BY port, protocol",
    )
    .bind(app.id)
    .fetch_all(&mut *conn)
    .await?;
    let fqdns = sqlx::query_as::<Sqlite, Fqdn>("SELECT * FROM fqdns WHERE app_id = ? ORDER BY fqdn")
        .bind(app.id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(AppRecord { app, ports, fqdns })
}
