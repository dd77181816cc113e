//! The SQLite store: one file, WAL, foreign keys on, busy timeout, synchronous FULL
//! (a reply means the write survives a power cut, not only a crash).
//!
//! Writes go through a pool of exactly one connection, so they are serialised by
//! construction; queries use a separate read-only pool and never wait on a writer.
//! The files are the owner's alone (0600): [`secure_files`] runs at every open.

use std::path::Path;
use std::str::FromStr;

use cubeos_kit::config::StoreConfig;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use cubeos_kit::private_file;

use crate::error::{RegistryError, Result};

/// The migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Clone)]
pub struct Store {
    pub writer: SqlitePool,
    pub reader: SqlitePool,
}

/// Connection options every CubeOS connection to the store uses.
pub fn connect_options(path: &Path, config: &StoreConfig) -> Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(config.busy_timeout)
        .synchronous(SqliteSynchronous::Full))
}

/// Makes the database and its WAL and shared-memory files readable by their owner
/// only: they hold password hashes and token digests. The database file is created
/// 0600 before SQLite first opens it, since SQLite creates the `-wal` and `-shm`
/// files with the database file's mode; files an older version left 0644 are
/// tightened.
pub fn secure_files(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        private_file::private_dir(dir)?;
    }
    private_file::ensure_private(path)?;
    for suffix in ["-wal", "-shm"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        private_file::restrict(Path::new(&companion))?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub async fn open(path: &Path, config: &StoreConfig) -> Result<Store> {
        secure_files(path).map_err(|e| RegistryError::Files(format!("{}: {e}", path.display())))?;
        let options = connect_options(path, config)?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone().create_if_missing(true))
            .await?;
        MIGRATOR.run(&writer).await?;
        let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        sqlx::query(
            "INSERT INTO system_state (key, value) VALUES ('schema_version', ?1)
             ON CONFLICT(key) DO UPDATE SET value = ?1, updated_at = CURRENT_TIMESTAMP
             WHERE value <> ?1",
        )
        .bind(latest.to_string())
        .execute(&writer)
        .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(config.read_connections)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Store { writer, reader })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}
