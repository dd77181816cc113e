//! Secrets at rest and in transit on the loopback bus.
//!
//! One 256-bit key, generated on first start and kept in the data dir with mode
//! 0600 ([`SecretBox::load_or_create`]), seals every secret CubeOS stores or passes
//! between its own processes: WiFi, SMB and VPN passwords in the database, and
//! passwords and tokens inside commands and replies on the loopback broker. A sealed
//! value is the string `sealed:v1:<base64(nonce || XChaCha20-Poly1305 ciphertext)>`;
//! a subscriber to `#` sees only that, never the value or a hash of it.
//!
//! The gate seals the secrets of commands from outside clients (every field whose
//! type is [`Secret`], by re-encoding the command through its type) and opens sealed
//! values in the replies it hands back to them; the registry opens a password only to
//! hash or check it; whoever uses a stored secret (the network-mode service, a mount)
//! opens it where it is used.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::private_file;

pub use cubeos_contract::secret::{SEALED_PREFIX, Secret, is_sealed};

const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or create the secret key {path}: {reason}")]
    Key { path: String, reason: String },
    /// Deliberately says nothing about the value.
    #[error("a sealed value is damaged or was sealed under another key")]
    Damaged,
    #[error("cannot seal a value")]
    Seal,
}

/// The key that seals and opens secrets.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key>)")
    }
}

impl SecretBox {
    /// Reads the key at `path`, creating it (mode 0600) on first start.
    pub fn load_or_create(path: &Path) -> Result<SecretBox, SecretError> {
        let key = private_file::load_or_create(path, || XChaCha20Poly1305::generate_key(&mut OsRng).to_vec())
            .map_err(|e| key_error(path, e.to_string()))?;
        Self::from_key(path, &key)
    }

    /// Reads an existing key (clients never create it).
    pub fn load(path: &Path) -> Result<SecretBox, SecretError> {
        let key = Zeroizing::new(std::fs::read(path).map_err(|e| key_error(path, e.to_string()))?);
        Self::from_key(path, &key)
    }

    fn from_key(path: &Path, key: &[u8]) -> Result<SecretBox, SecretError> {
        let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| key_error(path, "wrong length".into()))?;
        Ok(SecretBox { cipher })
    }

    /// Seals `plain` under a fresh random nonce.
    pub fn seal(&self, plain: &str) -> Result<String, SecretError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut sealed = nonce.to_vec();
        sealed.extend(
            self.cipher
                .encrypt(&nonce, plain.as_bytes())
                .map_err(|_| SecretError::Seal)?,
        );
        Ok(format!("{SEALED_PREFIX}{}", STANDARD_NO_PAD.encode(sealed)))
    }

    /// Opens a sealed value.
    pub fn open(&self, sealed: &str) -> Result<Zeroizing<String>, SecretError> {
        let encoded = sealed.strip_prefix(SEALED_PREFIX).ok_or(SecretError::Damaged)?;
        let bytes = STANDARD_NO_PAD.decode(encoded).map_err(|_| SecretError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Damaged);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretError::Damaged)?;
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(&XNonce::from(nonce), ciphertext)
                .map_err(|_| SecretError::Damaged)?,
        );
        String::from_utf8(plain.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| SecretError::Damaged)
    }

    /// The stored form of `secret`: sealed (a value that arrived sealed is checked
    /// and kept), or empty for an empty secret.
    pub fn at_rest(&self, secret: &Secret) -> Result<String, SecretError> {
        match secret.as_travelling() {
            "" => Ok(String::new()),
            sealed if is_sealed(sealed) => self.open(sealed).map(|_| sealed.to_owned()),
            plain => self.seal(plain),
        }
    }

    /// Runs `f` (a serialisation) with this key installed as the sealer: every
    /// plain [`Secret`] it writes, at any depth and whatever its field is called,
    /// comes out sealed.
    pub fn sealing<R>(&self, f: impl FnOnce() -> R) -> R {
        let key = self.clone();
        cubeos_contract::secret::sealing(move |plain| key.seal(plain).ok(), f)
    }

    /// The value of `secret`, opened if sealed.
    pub fn reveal(&self, secret: &Secret) -> Result<Zeroizing<String>, SecretError> {
        match secret.as_travelling() {
            sealed if is_sealed(sealed) => self.open(sealed),
            plain => Ok(Zeroizing::new(plain.to_owned())),
        }
    }

    /// Opens every sealed string in `value` (at any depth). Returns whether anything
    /// was opened; a value that does not open is replaced by an empty string.
    pub fn open_fields(&self, value: &mut Value) -> bool {
        match value {
            Value::String(s) if is_sealed(s) => {
                *s = self.open(s).map(|p| p.to_string()).unwrap_or_default();
                true
            }
            Value::Object(map) => map.values_mut().fold(false, |any, v| self.open_fields(v) | any),
            Value::Array(items) => items.iter_mut().fold(false, |any, v| self.open_fields(v) | any),
            _ => false,
        }
    }
}

fn key_error(path: &Path, reason: String) -> SecretError {
    SecretError::Key {
        path: path.display().to_string(),
        reason,
    }
}

/// The plain value of a secret that is not sealed: what a reader without the key
/// may use.
pub fn reveal_plain(secret: &Secret) -> Option<Zeroizing<String>> {
    (!secret.is_sealed()).then(|| Zeroizing::new(secret.as_travelling().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn key() -> (tempfile::TempDir, SecretBox) {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretBox::load_or_create(&dir.path().join("secret.key")).unwrap();
        (dir, key)
    }

    #[test]
    fn seal_open_round_trip_and_key_file_is_private() {
        let (dir, key) = key();
        let sealed = key.seal("hunter2").unwrap();
        assert!(is_sealed(&sealed) && !sealed.contains("hunter2"));
        assert_ne!(sealed, key.seal("hunter2").unwrap(), "fresh nonce per seal");
        assert_eq!(key.open(&sealed).unwrap().as_str(), "hunter2");
        let path = dir.path().join("secret.key");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = SecretBox::load(&path).unwrap();
        assert_eq!(again.open(&sealed).unwrap().as_str(), "hunter2");
    }

    #[test]
    fn tampered_or_foreign_values_do_not_open() {
        let (_d1, a) = key();
        let (_d2, b) = key();
        let sealed = a.seal("pw").unwrap();
        assert!(matches!(b.open(&sealed), Err(SecretError::Damaged)));
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(a.open(std::str::from_utf8(&flipped).unwrap()).is_err());
        assert!(a.open("sealed:v1:").is_err());
        assert!(a.open("plain").is_err());
        assert!(a.at_rest(&Secret::new(b.seal("x").unwrap())).is_err());
    }

    #[test]
    fn secrets_are_sealed_by_type_and_opened_in_place() {
        let (_d, key) = key();
        #[derive(Serialize)]
        struct Args {
            username: String,
            passphrase: Secret,
            nested: Vec<Secret>,
        }
        let args = Args {
            username: "ann".into(),
            passphrase: "pw1".into(),
            nested: vec!["w".into()],
        };
        let mut value = key.sealing(|| serde_json::to_value(&args)).unwrap();
        let text = value.to_string();
        assert!(
            !text.contains("pw1") && !text.contains("\"w\"") && text.contains("ann"),
            "{text}"
        );
        assert!(key.open_fields(&mut value));
        assert_eq!(value, json!({"username": "ann", "passphrase": "pw1", "nested": ["w"]}));
        assert_eq!(key.reveal(&Secret::new(key.seal("x").unwrap())).unwrap().as_str(), "x");
        assert_eq!(reveal_plain(&Secret::new("p")).unwrap().as_str(), "p");
    }
}
