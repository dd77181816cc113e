//! What the two REST backends share: an HTTP client with a timeout, credentials that
//! may be sealed in the config, and one retry after signing in again when a session
//! has expired.

use std::time::Duration;

use cubeos_contract::secret::Secret;
use cubeos_kit::secrets::{self, SecretBox};
use zeroize::Zeroizing;

use crate::backend::BackendError;

/// A client for one backend.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

/// A configured password, opened when it is sealed. One this box cannot open is
/// its own error, not the backend refusing us.
pub fn password(
    what: &'static str,
    configured: &Secret,
    key: Option<&SecretBox>,
) -> Result<Zeroizing<String>, BackendError> {
    match key {
        Some(key) => key.reveal(configured).map_err(|_| BackendError::Sealed(what)),
        None => secrets::reveal_plain(configured).ok_or(BackendError::Sealed(what)),
    }
}

/// A reply body as `T`: a transport failure is `Unreachable`, a body of another
/// shape `Rejected`.
pub async fn json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    response: reqwest::Response,
) -> Result<T, BackendError> {
    let text = response.text().await.map_err(|e| unreachable(what, e))?;
    serde_json::from_str(&text).map_err(|e| BackendError::Rejected(what, format!("unexpected reply: {e}")))
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
        format!("{status}: {}", cubeos_contract::validate::truncate(body.trim(), 200)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_this_box_cannot_open_is_not_a_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretBox::load_or_create(&dir.path().join("k")).unwrap();
        let other = SecretBox::load_or_create(&dir.path().join("other")).unwrap();
        let sealed = Secret::new(key.seal("hunter2").unwrap());
        assert_eq!(password("npm", &sealed, Some(&key)).unwrap().as_str(), "hunter2");
        for opened in [password("npm", &sealed, None), password("npm", &sealed, Some(&other))] {
            let e = opened.unwrap_err();
            assert!(matches!(e, BackendError::Sealed("npm")), "{e}");
            assert!(!e.to_string().contains("hunter2"));
        }
        let plain = Secret::new("plain-pw");
        assert_eq!(password("npm", &plain, None).unwrap().as_str(), "plain-pw");
    }
}
