//! The service credentials: generated on first start, stored as JSON with mode 0600
//! in the data dir, read by every local client (services, the CLI on the box).

use std::fs;
use std::path::Path;

use cubeos_kit::private_file;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Username and password for the loopback broker.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

// The password must never reach a log line through `{:?}`.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read broker credentials {path}: {source} (is the data dir right, and readable by you?)")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write broker credentials {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("broker credentials {path} are corrupt: {reason}")]
    Corrupt { path: String, reason: String },
}

const SERVICE_USER: &str = "cubeos-service";

impl Credentials {
    /// Reads the credentials at `path`, creating them (and the parent directory) on
    /// first start. An existing file is tightened to 0600.
    pub fn load_or_create(path: &Path) -> Result<Credentials, CredentialsError> {
        let generate = || {
            let password: String = rand::rng()
                .sample_iter(rand::distr::Alphanumeric)
                .take(40)
                .map(char::from)
                .collect();
            let creds = Credentials {
                username: SERVICE_USER.to_owned(),
                password,
            };
            serde_json::to_vec_pretty(&creds).unwrap_or_default()
        };
        private_file::load_or_create(path, generate).map_err(|source| CredentialsError::Write {
            path: path.display().to_string(),
            source,
        })?;
        Self::load(path)
    }

    /// Reads existing credentials (clients never create them).
    pub fn load(path: &Path) -> Result<Credentials, CredentialsError> {
        let shown = path.display().to_string();
        let bytes = fs::read(path).map_err(|source| CredentialsError::Read {
            path: shown.clone(),
            source,
        })?;
        let creds: Credentials = serde_json::from_slice(&bytes).map_err(|e| CredentialsError::Corrupt {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        if creds.username.is_empty() || creds.password.len() < 16 {
            return Err(CredentialsError::Corrupt {
                path: shown,
                reason: "empty user or short password".into(),
            });
        }
        Ok(creds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/broker-credentials.json");
        let first = Credentials::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = Credentials::load_or_create(&path).unwrap();
        assert_eq!(first.password, again.password);
        assert!(!format!("{first:?}").contains(&first.password));
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        fs::write(&path, b"{nope").unwrap();
        assert!(matches!(
            Credentials::load(&path),
            Err(CredentialsError::Corrupt { .. })
        ));
    }
}
