//! Request, reply and error envelopes (DESIGN.md section 3).
//!
//! Request: `{"id", "reply_to", "args", "caller"?}`. Reply: `{"id", "ok": true, "data"}`
//! or `{"id", "ok": false, "error": {"code", "message", "details"?}}`. The error code
//! is one of the closed set [`ErrorCode`]; anything else a service knows about a
//! failure goes into `message` and `details`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::roles::Role;

/// The closed set of wire error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    NotFound,
    Conflict,
    Unauthorized,
    Forbidden,
    /// A dependency (Docker, a backend, another service) is down.
    Unavailable,
    Timeout,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one error that crosses the bus: what a handler returns and what a request
/// resolves to when the far side (or the wait for it) failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error, schemars::JsonSchema)]
#[error("{code}: {message}")]
pub struct BusError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl BusError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        BusError {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

/// Who sent a command. The gate stamps it on commands from outside clients (and
/// strips any a client sent); commands without one come from the loopback broker,
/// whose clients hold the service credentials, and are `system`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Caller {
    pub user: String,
    pub role: Role,
    /// The session the client signed in with, when it used a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The client's address, for login throttling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Caller {
    pub fn system() -> Self {
        Caller {
            user: "system".into(),
            role: Role::System,
            session: None,
            address: None,
        }
    }
}

/// A command as it travels on the bus.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RequestEnvelope {
    pub id: String,
    pub reply_to: String,
    #[serde(default)]
    pub args: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
}

/// A reply as it travels on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReplyEnvelope {
    pub id: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<BusError>,
}

impl ReplyEnvelope {
    pub fn from_result(id: String, result: Result<Value, BusError>) -> Self {
        match result {
            Ok(data) => ReplyEnvelope {
                id,
                ok: true,
                data: Some(data),
                error: None,
            },
            Err(error) => ReplyEnvelope {
                id,
                ok: false,
                data: None,
                error: Some(error),
            },
        }
    }

    pub fn into_result(self) -> Result<Value, BusError> {
        match (self.ok, self.error) {
            (true, _) => Ok(self.data.unwrap_or(Value::Null)),
            (false, Some(e)) => Err(e),
            (false, None) => Err(BusError::internal("error reply without an error object")),
        }
    }
}

/// Where to answer a payload that did not parse as a request: the `id` and
/// `reply_to` recovered from it, if any.
///
/// A malformed command still deserves a typed error when its sender can be found,
/// so this looks for the two string fields in a JSON object that failed to parse as
/// a whole (truncated, wrong types elsewhere, ...). `reply_to` must be a concrete
/// reply topic.
pub fn salvage_reply_address(payload: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(payload).ok()?;
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) {
        let reply_to = map.get("reply_to")?.as_str()?.to_owned();
        let id = match map.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(other) if !other.is_null() => other.to_string(),
            _ => String::new(),
        };
        return crate::topics::is_reply_topic(&reply_to).then_some((id, reply_to));
    }
    let reply_to = string_field(text, "reply_to")?;
    let id = string_field(text, "id").unwrap_or_default();
    crate::topics::is_reply_topic(&reply_to).then_some((id, reply_to))
}

/// Finds `"key": "<string>"` in possibly broken JSON and decodes the string.
fn string_field(text: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\"");
    let mut search_from = 0;
    while let Some(pos) = text[search_from..].find(&needle) {
        let after = search_from + pos + needle.len();
        let rest = text[after..].trim_start();
        if let Some(value) = rest.strip_prefix(':') {
            let value = value.trim_start();
            if value.starts_with('"') {
                let mut de = serde_json::Deserializer::from_str(value);
                if let Ok(s) = <String as Deserialize>::deserialize(&mut de) {
                    return Some(s);
                }
            }
        }
        search_from = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_codes_are_snake_case_on_the_wire() {
        let e = BusError::conflict("port 6100/tcp is held by app 'a'");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({"code": "conflict", "message": "port 6100/tcp is held by app 'a'"})
        );
        let back: BusError = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        assert!(serde_json::from_value::<ErrorCode>(json!("teapot")).is_err());
    }

    #[test]
    fn reply_round_trip() {
        let ok = ReplyEnvelope::from_result("1".into(), Ok(json!({"a": 1})));
        assert_eq!(ok.clone().into_result().unwrap(), json!({"a": 1}));
        let err = ReplyEnvelope::from_result("2".into(), Err(BusError::not_found("no app 'x'")));
        let wire = serde_json::to_string(&err).unwrap();
        let back: ReplyEnvelope = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.into_result().unwrap_err().code, ErrorCode::NotFound);
    }

    #[test]
    fn salvage_finds_reply_address_in_broken_json() {
        let broken = br#"{"id":"7","reply_to":"cubeos/reply/c1","args":{"name": "#;
        assert_eq!(
            salvage_reply_address(broken),
            Some(("7".into(), "cubeos/reply/c1".into()))
        );
        let wrong_types = br#"{"id": 5, "reply_to": "cubeos/reply/c2", "args": 3}"#;
        assert_eq!(
            salvage_reply_address(wrong_types),
            Some(("5".into(), "cubeos/reply/c2".into()))
        );
        assert_eq!(salvage_reply_address(br#"{"reply_to":"cubeos/state/apps/x"}"#), None);
        assert_eq!(salvage_reply_address(br#"{"reply_to":"cubeos/reply/#"}"#), None);
        assert_eq!(salvage_reply_address(b"\xff\xfe"), None);
        assert_eq!(salvage_reply_address(b"not json"), None);
    }
}
