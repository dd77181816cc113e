//! What the two REST backends share: an HTTP client with a timeout, credentials that
//! may be sealed in the config, and one retry after signing in again when a session
//! has expired.

use std::time::Duration;

use cubeos_shared::secrets::{Secret, SecretBox};
use zeroize::Zeroizing;

use crate::backend::BackendError;

/// A client for one backend.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

/// A configured password, opened when it is sealed.
pub fn password(
    what: &'static str,
    configured: &Secret,
    key: Option<&SecretBox>,
) -> Result<Zeroizing<String>, BackendError> {
    match key {
        Some(key) => configured.reveal(key).map_err(|_| BackendError::Auth(what)),
        None if configured.is_sealed() => Err(BackendError::Auth(what)),
        None => configured.reveal_plain().ok_or(BackendError::Auth(what)),
    }
}

/// A transport failure, without the URL's query (a Pi-hole sid could sit there).
pub fn unreachable(what: &'static str, e: reqwest::Error) -> BackendError {
    BackendError::Unreachable(what, e.without_url().to_string())
}

/// The error of a refused request, its body shortened for the status topic.
pub async fn rejected(what: &'static str, response: reqwest::Response) -> BackendError {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    refused(what, status, &body)
}

/// [`rejected`], for a body already read.
pub fn refused(what: &'static str, status: reqwest::StatusCode, body: &str) -> BackendError {
    BackendError::Rejected(
        what,
        format!("{status}: {}", cubeos_shared::validate::truncate(body.trim(), 200)),
    )
}
