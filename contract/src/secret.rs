//! Secrets as a type: a field of type [`Secret`] is sealed wherever it travels.
//!
//! A secret (a password, a token, a WiFi or SMB password) travels on the loopback
//! bus only sealed: `sealed:v1:<base64>` (the key and the cipher are the kit's
//! `SecretBox`). Which fields are secret is decided by their type, not by their
//! name: serialising a value while a sealer is installed ([`sealing`]) writes every
//! plain `Secret` inside it, at any depth, in its sealed form. The gate re-encodes
//! each outside command through its command type under the sealer, so a new secret
//! field is sealed because it is a `Secret`, whatever it is called.

use std::cell::RefCell;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Prefix of a sealed value.
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// True when `s` is a sealed value.
pub fn is_sealed(s: &str) -> bool {
    s.starts_with(SEALED_PREFIX)
}

/// Seals one plain value; `None` when it cannot (the serialisation then fails
/// rather than send the value in clear).
pub type Sealer<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The sealer installed for this thread, owned.
type OwnedSealer = Box<dyn Fn(&str) -> Option<String>>;

thread_local! {
    static SEALER: RefCell<Option<OwnedSealer>> = const { RefCell::new(None) };
}

/// Runs `f` (a serialisation) with `seal` installed: every plain [`Secret`] it
/// writes comes out sealed.
pub fn sealing<R>(seal: impl Fn(&str) -> Option<String> + 'static, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<OwnedSealer>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SEALER.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = SEALER.with(|s| s.borrow_mut().replace(Box::new(seal)));
    let _restore = Restore(previous);
    f()
}

/// A secret value: sealed (from the gate or a local client) or, from a loopback
/// client without the key, plain. Never printed, never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_sealed(&self) -> bool {
        is_sealed(&self.0)
    }

    /// The form it travels in, sealed or plain: for the kit's `SecretBox`, which
    /// opens it. Never print it.
    pub fn as_travelling(&self) -> &str {
        &self.0
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() || self.is_sealed() {
            return serializer.serialize_str(&self.0);
        }
        let sealed = SEALER.with(|s| s.borrow().as_ref().map(|seal| seal(&self.0)));
        match sealed {
            None => serializer.serialize_str(&self.0),
            Some(Some(sealed)) => serializer.serialize_str(&sealed),
            Some(None) => Err(serde::ser::Error::custom("a secret could not be sealed")),
        }
    }
}

/// On the wire a secret is a string: plain from a client, sealed between services.
impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A secret: plain from a client, `sealed:v1:...` between services; never in a reply."
        })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret::new(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, schemars::JsonSchema)]
    struct Nested {
        passphrase: Secret,
        list: Vec<Secret>,
        name: String,
    }

    #[test]
    fn secrets_are_sealed_by_type_whatever_their_name() {
        let value = Nested {
            passphrase: "pw1".into(),
            list: vec!["w".into(), Secret::new("sealed:v1:kept")],
            name: "ann".into(),
        };
        let text = sealing(
            |s| Some(format!("{SEALED_PREFIX}<{}>", s.len())),
            || serde_json::to_string(&value).unwrap(),
        );
        assert_eq!(
            text,
            r#"{"passphrase":"sealed:v1:<3>","list":["sealed:v1:<1>","sealed:v1:kept"],"name":"ann"}"#
        );
        // Without a sealer (a loopback client without the key) it travels as given.
        assert!(serde_json::to_string(&value).unwrap().contains("pw1"));
        assert!(!format!("{:?}", Secret::new("pw1")).contains("pw1"));
    }

    #[test]
    fn a_secret_that_cannot_be_sealed_is_not_sent() {
        let r = sealing(|_| None, || serde_json::to_string(&Secret::new("pw")));
        assert!(r.is_err());
    }
}
