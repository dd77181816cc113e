//! FAKE Pi-hole v6: an in-process contract server standing in for Pi-hole's FTL
//! REST API in tests. It is not Pi-hole. It serves only what CubeOS uses and
//! enforces what the real API does there, as read in FTL's `src/api/auth.c`,
//! `src/api/config.c`, `src/api/api.c`, `src/config/validator.c`,
//! `src/webserver/http-common.c` and the OpenAPI specs under
//! `src/api/docs/content/specs/` (master, Nov 2025):
//!
//! * `POST /api/auth {"password": …}`: 200 with a session (`sid`, `csrf`, a
//!   `validity` in seconds, message "password correct"); a wrong password is 401
//!   with `{"session":{"valid":false,…,"sid":null,"validity":-1,"message":"password
//!   incorrect"}}`; no body, bad JSON, no `password` or a non-string one is 400
//!   `bad_request` with FTL's messages. At most 16 sessions (FTL's default
//!   `webserver.api.max_sessions`): the 17th live login is 429 `api_seats_exceeded`.
//! * `GET /api/auth` reports the session (401 with the session shape without one);
//!   `DELETE /api/auth` ends it: 204, or 401 with the session shape.
//! * Every `/api/config` request needs a live session's id, taken like FTL takes it,
//!   first found wins: a `sid` in a JSON body, header `sid`, header `X-FTL-SID`,
//!   cookie `sid` (then header `X-CSRF-TOKEN` must match the session's csrf), query
//!   `?sid=`. Without one: 401 `{"error":{"key":"unauthorized","message":"Unauthorized",
//!   "hint":null}}`. A session lives `validity` after its last authenticated use.
//! * `GET /api/config/dns/hosts` → `{"config":{"dns":{"hosts":[…]}}}`.
//! * `PUT /api/config/dns/hosts/<percent-encoded entry>` → 201 `{"took":…}`; an exact
//!   duplicate → 400 "Item already present"; an entry FTL's validator refuses (not
//!   "IP HOST [HOST…]", bad IP, bad hostname) → 400 "Invalid value" with FTL's hint.
//!   The path is percent-decoded as civetweb does (`+` stays `+`).
//! * `DELETE /api/config/dns/hosts/<entry>` → 204; absent → 404 whose body is only
//!   `{"took":…}` (FTL sends no error object there).
//! * Unknown paths and methods → 404 `not_found` "Not found".
//!
//! Not modelled: the rest of the config tree (other elements read as `{}`, PUT or
//! DELETE on them is 404), PATCH, `?detailed`, TOTP, app passwords, login rate
//! limiting, TLS, the web interface. One real quirk is deliberately not copied:
//! FTL's `check_client_auth` still accepts (and revives) an expired session whose
//! slot no login has reused yet, while a restart drops it. The fake always expires
//! it, which is the documented behaviour and the one a client must survive.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use super::{HttpReply, HttpRequest, Meter, Server, later, lock, random_bytes};

/// FTL's default `webserver.api.max_sessions`.
const MAX_SESSIONS: usize = 16;

/// A fake Pi-hole v6 API on a loopback port; stops when dropped.
pub struct FakePihole {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    password: String,
    validity: Duration,
    state: Mutex<State>,
    meter: Meter,
}

struct State {
    /// FTL's fixed table of session slots; a login takes the first free one.
    slots: Vec<Option<Session>>,
    hosts: Vec<String>,
}

struct Session {
    sid: String,
    csrf: String,
    valid_until: Instant,
    /// Set by `expire_sessions`, standing for the time having run out.
    forced_expired: bool,
}

impl Session {
    fn live(&self, now: Instant) -> bool {
        !self.forced_expired && now <= self.valid_until
    }
}

impl FakePihole {
    /// Starts a fake whose admin password is `password` and whose sessions last
    /// `validity` after their last use (FTL's `webserver.session.timeout`; it is
    /// reported in whole seconds, so use whole seconds).
    pub async fn start(password: &str, validity: Duration) -> FakePihole {
        let shared = Arc::new(Shared {
            password: password.to_string(),
            validity,
            state: Mutex::new(State {
                slots: (0..MAX_SESSIONS).map(|_| None).collect(),
                hosts: Vec::new(),
            }),
            meter: Meter::default(),
        });
        let handler = shared.clone();
        let server = Server::start(Arc::new(move |request| handler.handle(request))).await;
        FakePihole { shared, server }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `dns.hosts` as it stands, in order.
    pub fn hosts(&self) -> Vec<String> {
        lock(&self.shared.state).hosts.clone()
    }

    /// Adds an entry behind the API's back (a person's own record, or drift). It
    /// is not validated, as an edit of pihole.toml would not be.
    pub fn add_host(&self, entry: &str) {
        lock(&self.shared.state).hosts.push(entry.to_string());
    }

    /// Removes an entry behind the API's back; false when it was not there.
    pub fn remove_host(&self, entry: &str) -> bool {
        let mut state = lock(&self.shared.state);
        let before = state.hosts.len();
        state.hosts.retain(|h| h != entry);
        state.hosts.len() != before
    }

    /// Makes every existing session expired, as if its timeout had passed.
    pub fn expire_sessions(&self) {
        for session in lock(&self.shared.state).slots.iter_mut().flatten() {
            session.forced_expired = true;
        }
    }

    /// Requests and sign-ins (`POST /api/auth`) so far, and the outage switch.
    pub fn meter(&self) -> &Meter {
        &self.shared.meter
    }
}

/// The request body as FTL sees it: absent, JSON, or not JSON (with where it broke).
enum Payload {
    None,
    Json(Value),
    Invalid(String),
}

impl Payload {
    fn parse(body: &[u8]) -> Payload {
        if body.is_empty() {
            return Payload::None;
        }
        // cJSON_ParseWithOpts(…, require_null_terminated = 0) stops after the
        // first value, so trailing bytes are ignored as FTL ignores them.
        let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
        match values.next() {
            Some(Ok(value)) => Payload::Json(value),
            Some(Err(error)) => Payload::Invalid(rest_from(body, error.line(), error.column())),
            None => Payload::Invalid(String::new()),
        }
    }

    fn json(&self) -> Option<&Value> {
        match self {
            Payload::Json(value) => Some(value),
            _ => None,
        }
    }
}

/// The input from a parse error's position on: FTL's hint is cJSON's error pointer.
fn rest_from(body: &[u8], line: usize, column: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut offset = 0;
    for (number, content) in text.split_inclusive('\n').enumerate() {
        if number + 1 == line {
            offset += column.saturating_sub(1).min(content.len());
            break;
        }
        offset += content.len();
    }
    let mut start = offset.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    text[start..].chars().take(64).collect()
}

/// Why a request is not authenticated: FTL's `api->message` texts.
type Denied = &'static str;

struct Ctx {
    started: Instant,
}

impl Ctx {
    fn took(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn error(&self, status: u16, key: &str, message: &str, hint: Option<String>) -> HttpReply {
        HttpReply::json(
            status,
            json!({ "error": { "key": key, "message": message, "hint": hint }, "took": self.took() }),
        )
    }

    fn not_found(&self, path: &str) -> HttpReply {
        self.error(404, "not_found", "Not found", Some(path.to_string()))
    }

    fn took_only(&self, status: u16) -> HttpReply {
        HttpReply::json(status, json!({ "took": self.took() }))
    }
}

const DELETE_COOKIE: &str = "sid=deleted; SameSite=Lax; Path=/; Max-Age=-1; Expires=Thu, 01 Jan 1970 00:00:00 GMT;";

impl Shared {
    fn handle(&self, request: HttpRequest) -> HttpReply {
        let ctx = Ctx {
            started: Instant::now(),
        };
        if !self.meter.admit() {
            return ctx.error(
                503,
                "service_unavailable",
                "Service Unavailable",
                Some("fake Pi-hole is down".into()),
            );
        }
        // civetweb hands FTL the percent-decoded path (`local_uri_raw`), decoded
        // without form rules: `%20` is a space, `+` stays a plus.
        let path = percent_decode_str(&request.path).decode_utf8_lossy().into_owned();
        let payload = Payload::parse(&request.body);
        let mut state = lock(&self.state);
        let method = request.method.as_str();

        if path == "/api/auth" {
            return match method {
                "POST" => self.login(&ctx, &mut state, &request, &payload),
                "GET" => self.auth_status(&ctx, &mut state, &request, &payload),
                "DELETE" => self.logout(&ctx, &mut state, &request, &payload),
                _ => ctx.not_found(&path),
            };
        }
        let config_item = if path == "/api/config" {
            Some("")
        } else {
            path.strip_prefix("/api/config/")
        };
        if let Some(item) = config_item {
            if !matches!(method, "GET" | "PATCH" | "PUT" | "DELETE") {
                return ctx.not_found(&path);
            }
            // FTL checks the session before the handler looks at anything else.
            if self.authenticate(&mut state, &request, &payload, true).is_err() {
                return ctx.error(401, "unauthorized", "Unauthorized", None);
            }
            return match method {
                "GET" => get_config(&ctx, &state, item),
                "PATCH" => ctx.error(
                    400,
                    "bad_request",
                    "PATCH /api/config is not modelled by the fake",
                    None,
                ),
                _ if item.is_empty() => ctx.not_found(&path),
                _ => put_delete_config(&ctx, &mut state, method == "PUT", item),
            };
        }
        ctx.not_found(&path)
    }

    /// FTL's `check_client_auth`: finds the session id and, if it names a live
    /// session, extends that session's life. `is_api` is false for /api/auth
    /// itself, where FTL accepts a cookie without the CSRF header.
    fn authenticate(
        &self,
        state: &mut State,
        request: &HttpRequest,
        payload: &Payload,
        is_api: bool,
    ) -> Result<usize, Denied> {
        let (sid, from_cookie) = find_sid(request, payload).ok_or("no SID provided")?;
        let csrf = if from_cookie && is_api {
            Some(
                request
                    .header("X-CSRF-TOKEN")
                    .ok_or("Cookie authentication without CSRF token")?,
            )
        } else {
            None
        };
        let now = Instant::now();
        let (slot, session) = state
            .slots
            .iter_mut()
            .enumerate()
            .find_map(|(i, s)| s.as_mut().filter(|s| s.sid == sid).map(|s| (i, s)))
            .ok_or("session unknown")?;
        if csrf.is_some_and(|csrf| csrf != session.csrf) {
            return Err("CSRF token mismatch");
        }
        if !session.live(now) {
            return Err("session expired");
        }
        session.valid_until = later(now, self.validity);
        Ok(slot)
    }

    fn login(&self, ctx: &Ctx, state: &mut State, request: &HttpRequest, payload: &Payload) -> HttpReply {
        let body = match payload {
            Payload::None => return ctx.error(400, "bad_request", "No request body data", None),
            Payload::Invalid(hint) => {
                let message = "Invalid request body data (no valid JSON), error at hint";
                return ctx.error(400, "bad_request", message, Some(hint.clone()));
            }
            Payload::Json(body) => body,
        };
        let password = match body.get("password") {
            None => return ctx.error(400, "bad_request", "No password found in JSON payload", None),
            Some(Value::String(password)) => password.as_str(),
            Some(_) => return ctx.error(400, "bad_request", "Field password has to be of type 'string'", None),
        };
        let current = self.authenticate(state, request, payload, false);
        if let Ok(slot) = current
            && password.is_empty()
        {
            return self.session_reply(ctx, state, slot, "correct password");
        }
        if password != self.password {
            // FTL answers with whatever session the request already had: a live
            // one is 200 (still valid), none is 401.
            return match current {
                Ok(slot) => self.session_reply(ctx, state, slot, "password incorrect"),
                Err(_) => invalid_session(ctx, 401, "password incorrect"),
            };
        }
        let now = Instant::now();
        // FTL frees expired slots while it looks for the first free one.
        let mut free = None;
        for (i, slot) in state.slots.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|s| !s.live(now)) {
                *slot = None;
            }
            if slot.is_none() {
                free = Some(i);
                break;
            }
        }
        let Some(free) = free else {
            let hint = Some("increase webserver.api.max_sessions".to_string());
            return ctx.error(429, "api_seats_exceeded", "API seats exceeded", hint);
        };
        state.slots[free] = Some(Session {
            sid: new_sid(),
            csrf: new_sid(),
            valid_until: later(now, self.validity),
            forced_expired: false,
        });
        self.meter.signed_in();
        self.session_reply(ctx, state, free, "password correct")
    }

    fn auth_status(&self, ctx: &Ctx, state: &mut State, request: &HttpRequest, payload: &Payload) -> HttpReply {
        match self.authenticate(state, request, payload, false) {
            Ok(slot) => self.session_reply(ctx, state, slot, "correct password"),
            Err(why) => invalid_session(ctx, 401, why),
        }
    }

    fn logout(&self, ctx: &Ctx, state: &mut State, request: &HttpRequest, payload: &Payload) -> HttpReply {
        match self.authenticate(state, request, payload, false) {
            Ok(slot) => {
                state.slots[slot] = None;
                HttpReply::empty(204).with_header("Set-Cookie", DELETE_COOKIE.to_string())
            }
            Err(why) => invalid_session(ctx, 401, why),
        }
    }

    fn session_reply(&self, ctx: &Ctx, state: &State, slot: usize, message: &str) -> HttpReply {
        let Some(Some(session)) = state.slots.get(slot) else {
            return invalid_session(ctx, 401, "session unknown");
        };
        let remaining = session.valid_until.saturating_duration_since(Instant::now());
        // FTL computes whole seconds (valid_until - now); round so that a fresh
        // session reports exactly the configured timeout.
        let validity = (remaining.as_millis() + 500) / 1000;
        let cookie = format!(
            "sid={}; SameSite=Lax; Path=/; Max-Age={}; HttpOnly",
            session.sid,
            self.validity.as_secs()
        );
        HttpReply::json(
            200,
            json!({
                "session": {
                    "valid": true,
                    "totp": false,
                    "sid": session.sid,
                    "csrf": session.csrf,
                    "validity": validity,
                    "message": message,
                },
                "took": ctx.took(),
            }),
        )
        .with_header("Set-Cookie", cookie)
    }
}

fn invalid_session(ctx: &Ctx, status: u16, message: &str) -> HttpReply {
    HttpReply::json(
        status,
        json!({
            "session": { "valid": false, "totp": false, "sid": null, "validity": -1, "message": message },
            "took": ctx.took(),
        }),
    )
    .with_header("Set-Cookie", DELETE_COOKIE.to_string())
}

/// FTL's session ids: 128 random bits in standard base64 with its last
/// character cut off (SID_SIZE leaves room for the NUL), e.g.
/// `vFA+EP4MQ5JJvJg+3Q2Jnw=`. They contain `+` and `/`, so a client must
/// percent-encode one it puts in a query string.
fn new_sid() -> String {
    let mut sid = STANDARD.encode(random_bytes::<16>());
    sid.pop();
    sid
}

/// Where FTL looks for the session id, in its order; the bool says "from a cookie".
fn find_sid(request: &HttpRequest, payload: &Payload) -> Option<(String, bool)> {
    if let Some(Value::String(sid)) = payload.json().and_then(|body| body.get("sid")) {
        return Some((sid.clone(), false));
    }
    if let Some(sid) = request.header("sid").or_else(|| request.header("X-FTL-SID")) {
        return Some((sid.to_string(), false));
    }
    let cookie = request.header("cookie").and_then(|cookies| {
        cookies
            .split(';')
            .find_map(|c| c.trim().strip_prefix("sid=").map(str::to_string))
    });
    if let Some(sid) = cookie {
        return Some((sid, true));
    }
    let query = request.query.as_deref()?;
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("sid=")?;
        // mg_get_var form-decodes (a `+` becomes a space) and FTL turns spaces
        // back into `+`, so both `+` and `%2B` arrive as `+`.
        let spaced = value.replace('+', " ");
        let decoded = percent_decode_str(&spaced).decode_utf8_lossy().replace(' ', "+");
        (!decoded.is_empty()).then_some((decoded, false))
    })
}

fn get_config(ctx: &Ctx, state: &State, item: &str) -> HttpReply {
    let path: Vec<&str> = item.split('/').filter(|p| !p.is_empty()).collect();
    // FTL returns every element under the requested path; of the whole tree the
    // fake knows only dns.hosts.
    let covers_hosts = matches!(path.as_slice(), [] | ["dns"] | ["dns", "hosts", ..]);
    let config = if covers_hosts {
        json!({ "dns": { "hosts": state.hosts } })
    } else {
        json!({})
    };
    HttpReply::json(200, json!({ "config": config, "took": ctx.took() }))
}

/// FTL's `api_config_put_delete`, for the one array the fake holds.
fn put_delete_config(ctx: &Ctx, state: &mut State, put: bool, item: &str) -> HttpReply {
    let path: Vec<&str> = item.split('/').collect();
    // FTL's gen_config_path drops one trailing empty element.
    let path = match path.split_last() {
        Some((&"", rest)) => rest,
        _ => path.as_slice(),
    };
    if path.len() < 2 {
        let hint = if put {
            "Use, e.g., PUT /api/config/dns/upstreams/127.0.0.1 to add \"127.0.0.1\" to config.dns.upstreams"
        } else {
            "Use, e.g., DELETE /api/config/dns/upstreams/127.0.0.1 to remove \"127.0.0.1\" from config.dns.upstreams"
        };
        return ctx.error(400, "bad_request", "Invalid path depth", Some(hint.to_string()));
    }
    let ["dns", "hosts", entry] = path else {
        // No string array at that path: FTL's 404 carries no error object.
        return ctx.took_only(404);
    };
    let position = state.hosts.iter().position(|h| h == entry);
    if put {
        if position.is_some() {
            let hint = Some("Uniqueness of items is enforced".to_string());
            return ctx.error(400, "bad_request", "Item already present", hint);
        }
        let mut candidate = state.hosts.clone();
        candidate.push(entry.to_string());
        // FTL validates the whole new array, so an invalid entry already there
        // (added by hand) fails every later PUT too.
        if let Err(hint) = validate_dns_hosts(&candidate) {
            return ctx.error(400, "bad_request", "Invalid value", Some(hint));
        }
        state.hosts = candidate;
        ctx.took_only(201)
    } else {
        match position {
            Some(i) => {
                state.hosts.remove(i);
                HttpReply::empty(204)
            }
            None => ctx.took_only(404),
        }
    }
}

/// C's isspace in the "C" locale.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// FTL's `validate_dns_hosts`: each entry is "IP HOST [HOST …]" (spaces or tabs),
/// optionally followed by a `#` comment; the hint names the first bad entry.
fn validate_dns_hosts(entries: &[String]) -> Result<(), String> {
    for (i, entry) in entries.iter().enumerate() {
        let trimmed = entry.trim_start_matches(is_c_space);
        let (ip, rest) = match trimmed.find([' ', '\t']) {
            Some(at) => (&trimmed[..at], Some(&trimmed[at + 1..])),
            None => (trimmed, None),
        };
        if ip.is_empty() {
            return Err(format!("dns.hosts[{i}]: found no first element (\"{entry}\")"));
        }
        if ip.parse::<std::net::Ipv4Addr>().is_err() && ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "dns.hosts[{i}]: neither a valid IPv4 nor IPv6 address (\"{ip}\")"
            ));
        }
        let mut names = 0;
        for token in rest.unwrap_or("").split([' ', '\t']) {
            let name = token.trim_start_matches(is_c_space);
            if name.is_empty() {
                continue;
            }
            if name.starts_with('#') {
                break;
            }
            if !valid_domain(name) {
                return Err(format!("dns.hosts[{i}]: invalid hostname (\"{name}\")"));
            }
            names += 1;
        }
        if names < 1 {
            return Err(format!(
                "dns.hosts[{i}]: entry does not have at least one hostname (\"{entry}\")"
            ));
        }
    }
    Ok(())
}

/// FTL's `valid_domain(…, fqdn_only = false)`: [A-Za-z0-9._-], at most 255 bytes,
/// no empty label, labels up to 63, the last label neither starting nor ending
/// with `-`. Single-label names ("router") are allowed.
fn valid_domain(domain: &str) -> bool {
    let bytes = domain.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 {
        return false;
    }
    let mut last_dot: isize = -1;
    for (i, &b) in bytes.iter().enumerate() {
        if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
            return false;
        }
        if b == b'.' {
            let gap = i as isize - last_dot;
            if gap == 1 || gap > 64 {
                return false;
            }
            last_dot = i as isize;
        }
    }
    let tld_start = usize::try_from(last_dot + 1).unwrap_or(0);
    bytes.get(tld_start) != Some(&b'-') && bytes.last() != Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_entries_are_validated_like_ftl() {
        let ok = |e: &str| validate_dns_hosts(&[e.to_string()]).is_ok();
        assert!(ok("10.42.24.1 app.cubeos.cube"));
        assert!(ok("  fd00::1\trouter other.lan # comment"));
        assert!(ok("10.0.0.1 app.cube."));
        assert!(!ok("10.0.0.1"));
        assert!(!ok("10.0.0.1 # only a comment"));
        assert!(!ok("10.0.0.256 app.cube"));
        assert!(!ok("app.cube 10.0.0.1"));
        assert!(!ok("10.0.0.1 bad..name"));
        assert!(!ok("10.0.0.1 -bad"));
        assert!(!ok("10.0.0.1 under_score.ok x.-no"));
        assert!(!ok(""));
        assert_eq!(
            validate_dns_hosts(&["1.2.3.4 a".into(), "x y".into()]),
            Err("dns.hosts[1]: neither a valid IPv4 nor IPv6 address (\"x\")".into())
        );
    }

    #[test]
    fn sids_look_like_ftls() {
        let sid = new_sid();
        assert_eq!(sid.len(), 23);
        assert!(sid.ends_with('='));
        assert_ne!(sid, new_sid());
    }
}
