//! The registry's errors, mapped once onto the wire codes.

use cubeos_contract::validate::FieldError;
use cubeos_kit::{BusError, ErrorCode};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("no {what} named '{name}'")]
    NotFound { what: &'static str, name: String },
    #[error("{what} '{name}' already exists")]
    AlreadyExists { what: &'static str, name: String },
    #[error("port {port}/{protocol} is held by app '{app}'")]
    PortHeld { port: i64, protocol: String, app: String },
    #[error("{fqdn} is held by app '{app}'")]
    FqdnHeld { fqdn: String, app: String },
    #[error("{0}")]
    Protected(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// Says nothing of the value involved.
    #[error(transparent)]
    Secret(#[from] cubeos_kit::secrets::SecretError),
    #[error("{0}")]
    Crypto(&'static str),
    /// Too much work waiting (password hashing): try again later.
    #[error("{0}")]
    Busy(String),
    #[error("storage error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot secure the database files: {0}")]
    Files(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("reply encoding failed: {0}")]
    Encode(#[from] serde_json::Error),
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl From<RegistryError> for BusError {
    fn from(e: RegistryError) -> BusError {
        match &e {
            RegistryError::Invalid(f) => {
                BusError::new(ErrorCode::BadRequest, e.to_string()).with_details(json!({ "field": f.field }))
            }
            RegistryError::NotFound { .. } => BusError::new(ErrorCode::NotFound, e.to_string()),
            RegistryError::Unauthorized(_) => BusError::new(ErrorCode::Unauthorized, e.to_string()),
            RegistryError::Forbidden(_) => BusError::new(ErrorCode::Forbidden, e.to_string()),
            RegistryError::Secret(cubeos_kit::secrets::SecretError::Damaged) => {
                BusError::new(ErrorCode::BadRequest, e.to_string())
            }
            RegistryError::Secret(_) | RegistryError::Crypto(_) => {
                tracing::error!(error = %e, "secret handling failed");
                BusError::new(ErrorCode::Internal, e.to_string())
            }
            RegistryError::Busy(_) => BusError::new(ErrorCode::Unavailable, e.to_string()),
            RegistryError::AlreadyExists { .. } | RegistryError::Protected(_) => {
                BusError::new(ErrorCode::Conflict, e.to_string())
            }
            RegistryError::PortHeld { port, protocol, app } => BusError::new(ErrorCode::Conflict, e.to_string())
                .with_details(json!({ "port": port, "protocol": protocol, "app": app })),
            RegistryError::FqdnHeld { fqdn, app } => {
                BusError::new(ErrorCode::Conflict, e.to_string()).with_details(json!({ "fqdn": fqdn, "app": app }))
            }
            // Storage failures are logged where they happen; the wire gets no SQL.
            RegistryError::Database(_)
            | RegistryError::Files(_)
            | RegistryError::Migrate(_)
            | RegistryError::Encode(_) => {
                tracing::error!(error = %e, "storage failure");
                BusError::new(ErrorCode::Internal, "storage error (see the registry log)")
            }
        }
    }
}

/// True when `e` is SQLite's UNIQUE constraint failing.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
