//! People's accounts: argon2id password hashes (made by [`crate::hasher`]), roles,
//! and the rule that the last admin can be neither deleted nor demoted.

use cubeos_contract::models::User;
use cubeos_contract::roles::Role;
use cubeos_contract::validate::{self, FieldError};

use crate::error::{RegistryError, Result};
use crate::store::Store;
use crate::tokens::TOKEN_PREFIX;

/// Shortest password accepted.
const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 256;

pub use cubeos_contract::api::registry::UserAdd as NewUser;

/// Checks a password's length and that it cannot be taken for a token (a sign-in
/// secret with the token prefix is checked as a token, so such a password could
/// never be used); the message never contains it.
pub fn check_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(FieldError::new(
            "password",
            format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        )
        .into());
    }
    if password.starts_with(TOKEN_PREFIX) {
        return Err(FieldError::new("password", format!("must not start with '{TOKEN_PREFIX}'")).into());
    }
    Ok(())
}

fn check_role(role: Role) -> Result<()> {
    if role.is_person() {
        Ok(())
    } else {
        Err(FieldError::new("role", "must be admin, user or readonly").into())
    }
}

/// Creates a user inside the caller's transaction.
pub async fn create(tx: &mut sqlx::SqliteConnection, username: &str, password_hash: &str, role: Role) -> Result<User> {
    validate::name("username", username)?;
    check_role(role)?;
    sqlx::query_as::<_, User>("INSERT INTO users (username, password_hash, role) VALUES (?, ?, ?) RETURNING *")
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .fetch_one(tx)
        .await
        .map_err(|e| match e {
            e if crate::error::is_unique_violation(&e) => RegistryError::AlreadyExists {
                what: "user",
                name: username.to_owned(),
            },
            e => e.into(),
        })
}

pub async fn get(store: &Store, username: &str) -> Result<Option<User>> {
    Ok(sqlx::query_as::<_, User>("SELECT * FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(&store.reader)
        .await?)
}

pub async fn require(store: &Store, username: &str) -> Result<User> {
    get(store, username).await?.ok_or_else(|| not_found(username))
}

pub async fn list(store: &Store) -> Result<Vec<User>> {
    Ok(sqlx::query_as::<_, User>("SELECT * FROM users ORDER BY username")
        .fetch_all(&store.reader)
        .await?)
}

/// Deletes a user (their sessions go with them). The last admin stays.
pub async fn delete(store: &Store, username: &str) -> Result<User> {
    let mut tx = store.writer.begin().await?;
    let user = in_tx(&mut tx, username).await?;
    if user.role == Role::Admin && admins(&mut tx).await? <= 1 {
        return Err(RegistryError::Protected("the last admin cannot be deleted".into()));
    }
    sqlx::query("DELETE FROM users WHERE id = ?")
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(user)
}

/// Changes a user's role. The last admin cannot be demoted.
pub async fn set_role(store: &Store, username: &str, role: Role) -> Result<User> {
    check_role(role)?;
    let mut tx = store.writer.begin().await?;
    let user = in_tx(&mut tx, username).await?;
    if user.role == Role::Admin && role != Role::Admin && admins(&mut tx).await? <= 1 {
        return Err(RegistryError::Protected("the last admin cannot be demoted".into()));
    }
    let user =
        sqlx::query_as::<_, User>("UPDATE users SET role = ?, updated_at = CURRENT_TIMESTAMP WHERE id = ? RETURNING *")
            .bind(role)
            .bind(user.id)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(user)
}

pub async fn set_password_hash(store: &Store, username: &str, password_hash: &str) -> Result<User> {
    sqlx::query_as::<_, User>(
        "UPDATE users SET password_hash = ?, updated_at = CURRENT_TIMESTAMP WHERE username = ? RETURNING *",
    )
    .bind(password_hash)
    .bind(username)
    .fetch_optional(&store.writer)
    .await?
    .ok_or_else(|| not_found(username))
}

/// The user, read in the writer's transaction that is about to change them.
async fn in_tx(tx: &mut sqlx::SqliteConnection, username: &str) -> Result<User> {
    sqlx::query_as::<_, User>("SELECT * FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(tx)
        .await?
        .ok_or_else(|| not_found(username))
}

fn not_found(username: &str) -> RegistryError {
    RegistryError::NotFound {
        what: "user",
        name: username.to_owned(),
    }
}

async fn admins(tx: &mut sqlx::SqliteConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'")
        .fetch_one(tx)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_that_would_be_taken_for_a_token_is_refused() {
        assert!(check_password("correct horse battery").is_ok());
        let err = check_password("cubeos_correct-horse").unwrap_err().to_string();
        assert!(err.contains("password") && err.contains("cubeos_"), "{err}");
        assert!(!err.contains("correct-horse"), "{err}");
        assert!(check_password("short").is_err());
    }
}
