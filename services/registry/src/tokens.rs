//! Sign-in tokens: people's sessions, and the credentials of hardware devices and
//! Swarm node agents, each bound to its own id.
//!
//! A token is 32 random bytes, shown once when issued. The store keeps only its
//! SHA-256, so the database alone cannot sign anyone in. Tokens carry a prefix so the
//! registry can tell one from a password at sign-in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::error::{RegistryError, Result};
use crate::store::Store;

/// Every token starts with this: a password never does (it is refused at creation).
pub const TOKEN_PREFIX: &str = "cubeos_";

pub use cubeos_contract::api::registry::{TokenInfo, TokenKind as Kind};

/// A newly issued token: the only time its value exists outside the client.
pub struct Issued {
    pub id: String,
    pub token: zeroize::Zeroizing<String>,
    pub expires_at: Option<i64>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `ttl` from now, in Unix seconds; a ttl past the end of time saturates.
fn expiry(ttl: Duration) -> i64 {
    now().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
}

fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// Issues a token for `subject`, valid for `ttl` (or until revoked).
pub async fn issue(
    store: &Store,
    kind: Kind,
    subject: &str,
    user_id: Option<i64>,
    ttl: Option<Duration>,
) -> Result<Issued> {
    let id = random_hex(8);
    let token = zeroize::Zeroizing::new(format!("{TOKEN_PREFIX}{}", random_hex(32)));
    let expires_at = ttl.map(expiry);
    // Expired sessions are dropped as new ones are made, so the table stays small.
    sqlx::query("DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at < ?")
        .bind(now())
        .execute(&store.writer)
        .await?;
    sqlx::query("INSERT INTO tokens (id, kind, subject, user_id, token_hash, expires_at) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(&id)
        .bind(kind)
        .bind(subject)
        .bind(user_id)
        .bind(digest(&token))
        .bind(expires_at)
        .execute(&store.writer)
        .await?;
    Ok(Issued { id, token, expires_at })
}

/// The live token `token` presented under `name`, if it is one: a session's user,
/// or a device's or node's name or token id.
pub async fn check(store: &Store, name: &str, token: &str) -> Result<Option<TokenInfo>> {
    let found = sqlx::query_as::<_, TokenInfo>(
        "SELECT id, kind, subject, user_id, expires_at, created_at FROM tokens
         WHERE token_hash = ? AND (subject = ?2 OR (kind <> 'session' AND id = ?2))
           AND (expires_at IS NULL OR expires_at >= ?3)",
    )
    .bind(digest(token))
    .bind(name)
    .bind(now())
    .fetch_optional(&store.reader)
    .await?;
    Ok(found)
}

/// Replaces a session's token and pushes its expiry out by `ttl`.
pub async fn rotate(store: &Store, id: &str, ttl: Duration) -> Result<Issued> {
    let token = zeroize::Zeroizing::new(format!("{TOKEN_PREFIX}{}", random_hex(32)));
    let expires_at = expiry(ttl);
    let updated = sqlx::query(
        "UPDATE tokens SET token_hash = ?, expires_at = ? WHERE id = ? AND kind = 'session' AND expires_at >= ?",
    )
    .bind(digest(&token))
    .bind(expires_at)
    .bind(id)
    .bind(now())
    .execute(&store.writer)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(RegistryError::NotFound {
            what: "session",
            name: id.to_owned(),
        });
    }
    Ok(Issued {
        id: id.to_owned(),
        token,
        expires_at: Some(expires_at),
    })
}

/// Revokes the token with this id, or every device / node credential with this
/// name; returns the ids revoked.
pub async fn revoke_by_id_or_subject(store: &Store, id_or_name: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "DELETE FROM tokens WHERE id = ?1 OR (kind IN ('device', 'node') AND subject = ?1) RETURNING id",
    )
    .bind(id_or_name)
    .fetch_all(&store.writer)
    .await?)
}

/// Revokes one token; returns whether it existed.
pub async fn revoke(store: &Store, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM tokens WHERE id = ?")
        .bind(id)
        .execute(&store.writer)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Revokes a user's sessions, except `keep`; returns the ids revoked.
pub async fn revoke_sessions_of(store: &Store, user_id: i64, keep: Option<&str>) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("DELETE FROM tokens WHERE kind = 'session' AND user_id = ? AND id IS NOT ? RETURNING id")
            .bind(user_id)
            .bind(keep)
            .fetch_all(&store.writer)
            .await?,
    )
}

/// Device and node credentials.
pub async fn list_credentials(store: &Store) -> Result<Vec<TokenInfo>> {
    Ok(sqlx::query_as::<_, TokenInfo>(
        "SELECT id, kind, subject, user_id, expires_at, created_at FROM tokens
         WHERE kind IN ('device', 'node') ORDER BY kind, subject",
    )
    .fetch_all(&store.reader)
    .await?)
}
