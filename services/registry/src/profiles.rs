//! Profiles (`full`, `minimal`, `offline` and custom ones) and the apps each enables.
//! At most one profile is active; system profiles cannot be deleted. Applying a
//! profile (starting and stopping apps) is the orchestrator's job.

pub use cubeos_contract::api::registry::{
    ProfileCreate as NewProfile, ProfileSetApps as ProfileApps, ProfileUpdate as ProfileChanges,
};
use cubeos_contract::models::{Profile, ProfileRecord};
use cubeos_contract::validate;
use sqlx::SqliteConnection;

use crate::apps;
use crate::error::{RegistryError, Result, is_unique_violation};
use crate::store::Store;

fn check_texts(display_name: Option<&str>, description: Option<&str>) -> Result<()> {
    if let Some(d) = display_name {
        validate::text("display_name", d, apps::MAX_DISPLAY_NAME)?;
    }
    if let Some(d) = description {
        validate::text("description", d, apps::MAX_DESCRIPTION)?;
    }
    Ok(())
}

async fn find(conn: &mut SqliteConnection, name: &str) -> Result<Profile> {
    sqlx::query_as::<_, Profile>("SELECT * FROM profiles WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| RegistryError::NotFound {
            what: "profile",
            name: name.to_owned(),
        })
}

pub async fn load_record(conn: &mut SqliteConnection, name: &str) -> Result<ProfileRecord> {
    let profile = find(conn, name).await?;
    let apps = sqlx::query_as::<_, (String, bool)>(
        "SELECT a.name, pa.enabled FROM profile_apps pa JOIN apps a ON a.id = pa.app_id WHERE pa.profile_id = ?",
    )
    .bind(profile.id)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    Ok(ProfileRecord { profile, apps })
}

pub async fn get(store: &Store, name: &str) -> Result<ProfileRecord> {
    validate::name("name", name)?;
    load_record(&mut *store.reader.acquire().await?, name).await
}

pub async fn list(store: &Store) -> Result<Vec<ProfileRecord>> {
    let mut conn = store.reader.acquire().await?;
    let names = sqlx::query_scalar::<_, String>("SELECT name FROM profiles ORDER BY id")
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        out.push(load_record(&mut conn, &name).await?);
    }
    Ok(out)
}

pub async fn create(store: &Store, new: NewProfile) -> Result<ProfileRecord> {
    validate::name("name", &new.name)?;
    check_texts(new.display_name.as_deref(), new.description.as_deref())?;
    let mut tx = store.writer.begin().await?;
    let inserted = sqlx::query("INSERT INTO profiles (name, display_name, description) VALUES (?, ?, ?)")
        .bind(&new.name)
        .bind(new.display_name.as_deref().unwrap_or(&new.name))
        .bind(new.description.unwrap_or_default())
        .execute(&mut *tx)
        .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(RegistryError::AlreadyExists {
                what: "profile",
                name: new.name,
            });
        }
        other => other?,
    };
    let record = load_record(&mut tx, &new.name).await?;
    tx.commit().await?;
    Ok(record)
}

/// Updates a profile. Returns every profile whose record changed (activating one
/// deactivates the others).
pub async fn update(store: &Store, changes: ProfileChanges) -> Result<Vec<ProfileRecord>> {
    validate::name("name", &changes.name)?;
    check_texts(changes.display_name.as_deref(), changes.description.as_deref())?;
    let mut tx = store.writer.begin().await?;
    let current = find(&mut tx, &changes.name).await?;
    let mut touched = vec![changes.name.clone()];
    if changes.is_active == Some(true) {
        touched.extend(
            sqlx::query_scalar::<_, String>(
                "UPDATE profiles SET is_active = FALSE, updated_at = CURRENT_TIMESTAMP
                 WHERE is_active AND id <> ? RETURNING name",
            )
            .bind(current.id)
            .fetch_all(&mut *tx)
            .await?,
        );
    }
    sqlx::query(
        "UPDATE profiles SET display_name = ?, description = ?, is_active = ?, updated_at = CURRENT_TIMESTAMP
         WHERE id = ?",
    )
    .bind(changes.display_name.unwrap_or(current.display_name))
    .bind(changes.description.unwrap_or(current.description))
    .bind(changes.is_active.unwrap_or(current.is_active))
    .bind(current.id)
    .execute(&mut *tx)
    .await?;
    let mut records = Vec::with_capacity(touched.len());
    for name in &touched {
        records.push(load_record(&mut tx, name).await?);
    }
    tx.commit().await?;
    Ok(records)
}

pub async fn delete(store: &Store, name: &str) -> Result<()> {
    validate::name("name", name)?;
    let mut tx = store.writer.begin().await?;
    let profile = find(&mut tx, name).await?;
    if profile.is_system {
        return Err(RegistryError::Protected(format!(
            "'{name}' is a system profile and cannot be deleted"
        )));
    }
    sqlx::query("DELETE FROM profiles WHERE id = ?")
        .bind(profile.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn set_apps(store: &Store, set: ProfileApps) -> Result<ProfileRecord> {
    validate::name("name", &set.name)?;
    for app in set.apps.keys() {
        validate::name("apps", app)?;
    }
    let mut tx = store.writer.begin().await?;
    let profile = find(&mut tx, &set.name).await?;
    sqlx::query("DELETE FROM profile_apps WHERE profile_id = ?")
        .bind(profile.id)
        .execute(&mut *tx)
        .await?;
    for (app, enabled) in &set.apps {
        let app = apps::find(&mut *tx, app).await?;
        sqlx::query("INSERT INTO profile_apps (profile_id, app_id, enabled) VALUES (?, ?, ?)")
            .bind(profile.id)
            .bind(app.id)
            .bind(enabled)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("UPDATE profiles SET updated_at = CURRENT_TIMESTAMP WHERE id = ?")
        .bind(profile.id)
        .execute(&mut *tx)
        .await?;
    let record = load_record(&mut tx, &set.name).await?;
    tx.commit().await?;
    Ok(record)
}
