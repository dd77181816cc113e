//! Field rules shared by every service that accepts input.
//!
//! Each function returns the value it checked (normalised where that is safe) or a
//! [`FieldError`] naming the field, so a service maps it onto `bad_request` once.

use serde::Serialize;

/// A field that failed its rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error, schemars::JsonSchema)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A field that failed its rule is the caller's mistake: `bad_request`.
impl From<FieldError> for crate::BusError {
    fn from(e: FieldError) -> Self {
        crate::BusError::bad_request(e.to_string())
    }
}

pub type FieldResult<T> = Result<T, FieldError>;

/// App, profile and other names that may become paths, stack names or DNS labels:
/// `^[a-z0-9][a-z0-9-]{0,62}$`.
pub fn name(field: &str, value: &str) -> FieldResult<()> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit",
        ))
    }
}

/// Whether `id` is a store id (an app store's own name for an app, such as
/// `2FAuth`): 1-64 of `A-Z a-z 0-9 . _ -`, not starting with '.', so never `..`, a
/// path separator or a hidden file.
pub fn is_store_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A TCP/UDP port: 1-65535. Takes i64 so that negative and oversized input is
/// rejected here rather than wrapped by a cast.
pub fn port(field: &str, value: i64) -> FieldResult<u16> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| FieldError::new(field, format!("{value} is not a port (1-65535)")))
}

/// Free text: bounded length, no control characters except newline and tab.
pub fn text(field: &str, value: &str, max_len: usize) -> FieldResult<()> {
    if value.chars().count() > max_len {
        return Err(FieldError::new(field, format!("longer than {max_len} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(FieldError::new(field, "contains control characters"));
    }
    Ok(())
}

/// One of a fixed set of words.
pub fn one_of(field: &str, value: &str, allowed: &[&str]) -> FieldResult<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(FieldError::new(field, format!("must be one of {}", allowed.join(", "))))
    }
}

/// A fully qualified domain name: dot-separated labels of a-z, 0-9 and '-', each
/// 1-63 long, 253 in all. Returned lowercased.
pub fn fqdn(field: &str, value: &str) -> FieldResult<String> {
    let lower = value.to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if lower.len() <= 253 && lower.contains('.') && lower.split('.').all(label_ok) {
        Ok(lower)
    } else {
        Err(FieldError::new(
            field,
            format!("'{}' is not a valid domain name", truncate(value, 80)),
        ))
    }
}

/// A settings key (system_state, preferences): `^[a-z0-9_.-]{1,64}$`.
pub fn key(field: &str, value: &str) -> FieldResult<()> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "must be 1-64 characters of a-z, 0-9, '_', '.', '-'",
        ))
    }
}

/// Cuts user input for quoting in an error message.
pub fn truncate(value: &str, max_chars: usize) -> String {
    if value.chars().count() <= max_chars {
        value.to_owned()
    } else {
        format!("{}...", value.chars().take(max_chars).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "filebrowser", "my-app-2", "0x", &"a".repeat(63)] {
            assert!(name("name", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "A",
            "a_b",
            "../x",
            "a/b",
            "a b",
            "a;drop",
            &"a".repeat(64),
            "é",
        ] {
            assert!(name("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(port("port", 1), Ok(1));
        assert_eq!(port("port", 65535), Ok(65535));
        for bad in [0, -1, 65536, 70000, i64::MIN] {
            assert!(port("port", bad).is_err());
        }
    }

    #[test]
    fn fqdns_and_text() {
        assert_eq!(fqdn("fqdn", "App.CubeOS.cube").unwrap(), "app.cubeos.cube");
        for bad in ["cube", "a..b", "-a.b", "a.b-", "a b.c", "../etc.x"] {
            assert!(fqdn("fqdn", bad).is_err(), "{bad}");
        }
        assert!(text("d", "hello\nworld", 20).is_ok());
        assert!(text("d", "bell\x07", 20).is_err());
        assert!(text("d", &"x".repeat(21), 20).is_err());
        assert!(key("key", "setup_complete").is_ok());
        assert!(key("key", "Bad Key").is_err());
    }
}
