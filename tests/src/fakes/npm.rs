//! FAKE Nginx Proxy Manager: an in-process contract server standing in for NPM's
//! REST API in tests. It is not NPM and configures no nginx. It serves the token
//! and proxy-host endpoints and enforces what NPM's backend does there, as read in
//! `backend/app.js`, `routes/tokens.js`, `routes/nginx/proxy_hosts.js`,
//! `internal/token.js`, `internal/proxy-host.js`, `internal/host.js`,
//! `models/token.js`, `models/proxy_host.js`, `lib/access.js`, `lib/error.js`,
//! `lib/validator/api.js` and `schema/` (develop, June 2026), and in the v2.12.6 tag
//! for [`NpmFlavor::V2_12`]:
//!
//! * `POST /api/tokens {"identity","secret"[,"scope":"user"]}` → 200
//!   `{"token": <JWT-shaped>, "expires": <ISO 8601 UTC, milliseconds>}`. A wrong
//!   email or password is an `AuthError`: 400 (401 up to v2.12)
//!   `{"error":{"code":400,"message":"Invalid email or password"}}`, plus
//!   `"message_i18n":"error.invalid-auth"` when only the password is wrong.
//!   `GET /api/tokens` with a live token hands out a fresh one.
//! * The proxy-host routes read `Authorization: Bearer <token>`. An expired token
//!   is 400 (401 up to v2.12) "Token has expired", whose `message_i18n` is then an
//!   *object* (`{"name":"TokenExpiredError","message":"jwt expired","expiredAt":…}`);
//!   a token NPM did not issue is 500 "Internal Error" (jsonwebtoken's error has no
//!   status); no token at all fails the permission check, which is 403 "Permission
//!   Denied", except in v2.13.0–v2.15.1, where a missing `new` makes it fall through
//!   to the catch-all 404 "Not Found - /nginx/proxy-hosts" (see [`NpmFlavor`]).
//! * Bodies are validated like NPM's ajv setup (`allErrors`, `coerceTypes`,
//!   `additionalProperties: false`) before the permission check, with ajv's error
//!   texts joined by ", ": 400 `{"error":{"code":400,"message":"data/forward_port must
//!   be integer"}}`. Coercion is real: `"8080"` is stored as 8080, `"true"` as true.
//!   A body without `Content-Type: application/json` is "Payload is undefined"; bad
//!   JSON is 400 "Internal Error".
//! * `GET /api/nginx/proxy-hosts` lists hosts ordered by their `domain_names` JSON
//!   text (NPM's `ORDER BY domain_names`), not by id. `POST` creates (201, the row
//!   with `owner`, `certificate`, `access_list` expanded); ids count up from 1 and
//!   are never reused; a name used by another host (case-insensitively) is 400
//!   "<name> is already in use". `GET …/<id>` (a non-integer or < 1 id is 400
//!   "Internal Error"), `PUT …/<id>` (partial; `id`, `created_on` and any unknown
//!   field are 400 "data must NOT have additional properties"), `DELETE …/<id>`
//!   (200 `true`); a missing id is 404 "Not Found - <id>". `domain_names` are stored
//!   sorted; SSL/HSTS flags are cleared without a certificate, as NPM does.
//! * Unknown paths and methods → 404 "Not Found - <path below /api>".
//!
//! Not modelled: users, permissions other than the admin's, certificates
//! (`certificate_id: "new"` is a 500, as a failed Let's Encrypt request is),
//! access lists, redirection and dead hosts (they also reserve domain names in
//! NPM), `enable`/`disable`, 2FA, audit log, and nginx itself (`meta` gets
//! `nginx_online: true` as if every config were fine).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};

use super::{HttpReply, HttpRequest, Meter, Server, iso_millis, later, lock, random_bytes, sql_datetime};

/// Which NPM release's error behaviour the fake copies. They differ exactly
/// where a client's error handling has to cope, so a client should pass
/// against all three.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NpmFlavor {
    /// v2.12.x and older (Express 4, CommonJS): auth failures are 401, missing
    /// items "Item Not Found - <id>", no token is 403, hosts have no
    /// `trust_forwarded_proto`, a 500 has no `code`.
    V2_12,
    /// v2.13.0 to v2.15.1, the newest release when this was written: auth
    /// failures are 400; a request without a token falls through to the
    /// catch-all 404 "Not Found - /nginx/proxy-hosts…" (`access.js` throws
    /// `errs.PermissionError(…)` without `new`; fixed upstream by PR #5796).
    #[default]
    V2_15,
    /// develop after PR #5796: as V2_15, but no token is 403 "Permission Denied".
    Develop,
}

/// A fake NPM API on a loopback port; stops when dropped.
pub struct FakeNpm {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    email: String,
    password: String,
    token_ttl: Duration,
    state: Mutex<State>,
    meter: Meter,
}

struct State {
    flavor: NpmFlavor,
    tokens: BTreeMap<String, Token>,
    /// Live proxy hosts by id; NPM soft-deletes, so a deleted id never returns.
    hosts: BTreeMap<i64, Map<String, Value>>,
    next_id: i64,
    /// The admin user (id 1) as an `owner` expansion shows it.
    owner: Value,
}

struct Token {
    expires_at: Instant,
    /// The JWT `exp` claim (Unix seconds), reported as `expiredAt`.
    exp: u64,
    forced_expired: bool,
}

impl Token {
    fn expired(&self, now: Instant) -> bool {
        // jsonwebtoken: expired once now >= exp.
        self.forced_expired || now >= self.expires_at
    }
}

impl FakeNpm {
    /// Starts a fake with one admin user (id 1) and tokens that live `token_ttl`
    /// (NPM's are a day).
    pub async fn start(email: &str, password: &str, token_ttl: Duration) -> FakeNpm {
        let email = email.trim().to_lowercase();
        let created = sql_datetime(SystemTime::now());
        let owner = json!({
            "id": 1,
            "created_on": created,
            "modified_on": created,
            "is_disabled": false,
            "email": email,
            "name": "Administrator",
            "nickname": "Admin",
            "avatar": "",
            "roles": ["admin"],
        });
        let shared = Arc::new(Shared {
            email,
            password: password.to_string(),
            token_ttl,
            state: Mutex::new(State {
                flavor: NpmFlavor::default(),
                tokens: BTreeMap::new(),
                hosts: BTreeMap::new(),
                next_id: 1,
                owner,
            }),
            meter: Meter::default(),
        });
        let handler = shared.clone();
        let server = Server::start(Arc::new(move |request| handler.handle(request))).await;
        FakeNpm { shared, server }
    }

    /// `http://127.0.0.1:PORT` without a trailing slash; the API is under `/api`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Switches which release's behaviour is copied (default [`NpmFlavor::V2_15`]).
    pub fn set_flavor(&self, flavor: NpmFlavor) {
        lock(&self.shared.state).flavor = flavor;
    }

    /// Every live proxy host as `GET /api/nginx/proxy-hosts/<id>` returns it, by id.
    pub fn hosts(&self) -> Vec<Value> {
        lock(&self.shared.state)
            .hosts
            .values()
            .cloned()
            .map(Value::Object)
            .collect()
    }

    /// Adds a host behind the API's back (a person's own, made in NPM's UI) and
    /// returns its id. Missing fields get NPM's defaults; `id`, `created_on` and
    /// `modified_on` are always assigned. Nothing is validated.
    pub fn insert_host(&self, host: Value) -> i64 {
        let mut state = lock(&self.shared.state);
        let data = match host {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let id = state.next_id;
        state.next_id += 1;
        let row = new_row(state.flavor, id, data);
        state.hosts.insert(id, row);
        id
    }

    /// Deletes a host behind the API's back; false when there was none.
    pub fn delete_host(&self, id: i64) -> bool {
        lock(&self.shared.state).hosts.remove(&id).is_some()
    }

    /// Makes every token issued so far expired.
    pub fn expire_tokens(&self) {
        for token in lock(&self.shared.state).tokens.values_mut() {
            token.forced_expired = true;
        }
    }

    /// Requests and sign-ins (`POST /api/tokens`) so far, and the outage switch.
    pub fn meter(&self) -> &Meter {
        &self.shared.meter
    }
}

// ---------------------------------------------------------------------------
// Error bodies: app.js's error handler sends {"error":{"code","message"}}.

fn error(status: u16, message: &str) -> HttpReply {
    HttpReply::json(status, json!({ "error": { "code": status, "message": message } }))
}

/// An error whose `public` flag is false: NPM hides its text.
fn internal(flavor: NpmFlavor, status: u16) -> HttpReply {
    if status == 500 && flavor == NpmFlavor::V2_12 {
        // v2.12 copied err.status, undefined for these, so `code` vanished.
        return HttpReply::json(500, json!({ "error": { "message": "Internal Error" } }));
    }
    error(status, "Internal Error")
}

fn auth_error(flavor: NpmFlavor, message: &str, i18n: Option<Value>) -> HttpReply {
    if flavor == NpmFlavor::V2_12 {
        return error(401, message);
    }
    let mut body = json!({ "error": { "code": 400, "message": message } });
    if let (Some(i18n), Some(error)) = (i18n, body.get_mut("error").and_then(Value::as_object_mut)) {
        error.insert("message_i18n".into(), i18n);
    }
    HttpReply::json(400, body)
}

/// `ItemNotFoundError(id)`; `id` is None where NPM passes something falsy.
fn not_found(flavor: NpmFlavor, id: Option<String>) -> HttpReply {
    let message = match (flavor, id) {
        (NpmFlavor::V2_12, id) => format!("Item Not Found - {}", id.unwrap_or_else(|| "NaN".into())),
        (_, Some(id)) => format!("Not Found - {id}"),
        (_, None) => "Not Found".to_string(),
    };
    error(404, &message)
}

// ---------------------------------------------------------------------------
// Routing.

#[derive(Clone, Copy)]
enum Route<'a> {
    Health,
    Tokens,
    Hosts,
    Host(&'a str),
    Other,
}

fn route(sub: &str) -> Route<'_> {
    match sub {
        "" | "/" => Route::Health,
        "/tokens" | "/tokens/" => Route::Tokens,
        "/nginx/proxy-hosts" | "/nginx/proxy-hosts/" => Route::Hosts,
        _ => match sub.strip_prefix("/nginx/proxy-hosts/") {
            Some(id) if !id.is_empty() && !id.contains('/') => Route::Host(id),
            _ => Route::Other,
        },
    }
}

/// Who the request is, after `jwt-decode`: `Some(())` is the admin, `None` is
/// nobody (no token), and an error reply ends the request.
type Access = Option<()>;

impl Shared {
    fn handle(&self, request: HttpRequest) -> HttpReply {
        if !self.meter.admit() {
            return error(503, "Service Unavailable");
        }
        let mut state = lock(&self.state);
        let flavor = state.flavor;
        let Some(sub) = request
            .path
            .strip_prefix("/api")
            .filter(|s| s.is_empty() || s.starts_with('/'))
        else {
            // Outside /api NPM serves its web UI; nothing a client wants.
            return not_found(flavor, Some(request.path.clone()));
        };
        // The catch-all's message shows the decoded path below /api.
        let shown = if sub.is_empty() {
            "/".to_string()
        } else {
            percent_decode_str(sub).decode_utf8_lossy().into_owned()
        };
        let catch_all = || not_found(flavor, Some(shown.clone()));
        let method = request.method.as_str();
        let route = route(sub);
        if method == "OPTIONS" && !matches!(route, Route::Other) {
            return HttpReply::empty(204);
        }
        match route {
            Route::Health if method == "GET" => self.health(flavor),
            Route::Tokens if method == "POST" => self.login(flavor, &mut state, &request),
            Route::Tokens if method == "GET" => match self.jwt_decode(flavor, &state, &request) {
                Err(reply) => reply,
                Ok(Some(())) => self.issue_token(&mut state),
                // getFreshToken without a user throws a non-public error.
                Ok(None) => internal(flavor, if flavor == NpmFlavor::V2_12 { 400 } else { 500 }),
            },
            Route::Hosts | Route::Host(_) => {
                // The routes run jwt-decode for every method, before anything else.
                let access = match self.jwt_decode(flavor, &state, &request) {
                    Ok(access) => access,
                    Err(reply) => return reply,
                };
                let denied = || match flavor {
                    NpmFlavor::V2_15 => catch_all(),
                    _ => error(403, "Permission Denied"),
                };
                let result = match (route, method) {
                    (Route::Hosts, "GET") => list_hosts(flavor, &state, &request, access),
                    (Route::Hosts, "POST") => self.create_host(flavor, &mut state, &request, access),
                    (Route::Host(id), "GET") => get_host(flavor, &state, &request, id, access),
                    (Route::Host(id), "PUT") => update_host(flavor, &mut state, &request, id, access),
                    (Route::Host(id), "DELETE") => delete_host(flavor, &mut state, id, access),
                    _ => Err(Failure::CatchAll),
                };
                match result {
                    Ok(reply) | Err(Failure::Reply(reply)) => reply,
                    Err(Failure::Denied) => denied(),
                    Err(Failure::CatchAll) => catch_all(),
                }
            }
            _ => catch_all(),
        }
    }

    fn health(&self, flavor: NpmFlavor) -> HttpReply {
        let (minor, revision) = if flavor == NpmFlavor::V2_12 { (12, 6) } else { (15, 1) };
        HttpReply::json(
            200,
            json!({ "status": "OK", "setup": true, "version": { "major": 2, "minor": minor, "revision": revision } }),
        )
    }

    /// `lib/express/jwt.js` + `jwt-decode.js` + `Token.load`.
    fn jwt_decode(&self, flavor: NpmFlavor, state: &State, request: &HttpRequest) -> Result<Access, HttpReply> {
        let token = request.header("authorization").and_then(|value| {
            // NPM splits on single spaces and wants exactly "Bearer" first.
            let mut parts = value.split(' ');
            (parts.next() == Some("Bearer"))
                .then(|| parts.next())
                .flatten()
                .filter(|t| !t.is_empty())
        });
        let Some(token) = token else { return Ok(None) };
        if token == "null" {
            return Err(auth_error(flavor, "Empty token", None));
        }
        // A token this server did not sign fails jsonwebtoken's verify with an
        // error that has no status: NPM answers 500.
        let known = state.tokens.get(token).ok_or_else(|| internal(flavor, 500))?;
        if known.expired(Instant::now()) {
            let expired_at = iso_millis(
                UNIX_EPOCH
                    .checked_add(Duration::from_secs(known.exp))
                    .unwrap_or(UNIX_EPOCH),
            );
            // v2.13+ passes jsonwebtoken's TokenExpiredError where the i18n key goes.
            let i18n = json!({ "name": "TokenExpiredError", "message": "jwt expired", "expiredAt": expired_at });
            return Err(auth_error(flavor, "Token has expired", Some(i18n)));
        }
        Ok(Some(()))
    }

    fn login(&self, flavor: NpmFlavor, state: &mut State, request: &HttpRequest) -> HttpReply {
        let body = match read_body(flavor, request) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let data = match validate(&TOKEN_SCHEMA, body.as_ref(), &[]) {
            Ok(data) => data,
            Err(reply) => return reply,
        };
        let identity = data
            .get("identity")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_lowercase();
        if identity != self.email {
            return auth_error(flavor, "Invalid email or password", None);
        }
        if data.get("secret").and_then(Value::as_str) != Some(self.password.as_str()) {
            return auth_error(flavor, "Invalid email or password", Some(json!("error.invalid-auth")));
        }
        self.meter.signed_in();
        self.issue_token(state)
    }

    /// A JWT-shaped RS256 token for user 1. Only this server's table makes it
    /// valid, as only NPM's private key does for the real one.
    fn issue_token(&self, state: &mut State) -> HttpReply {
        let now = SystemTime::now();
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let exp = iat.saturating_add(self.token_ttl.as_secs().max(1));
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = json!({
            "iss": "api",
            "attrs": { "id": 1 },
            "scope": ["user"],
            "expiresIn": format!("{}s", self.token_ttl.as_secs()),
            "jti": STANDARD.encode(random_bytes::<12>()),
            "iat": iat,
            "exp": exp,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signature = URL_SAFE_NO_PAD.encode(random_bytes::<256>());
        let token = format!("{header}.{claims}.{signature}");
        let expires_at = later(Instant::now(), self.token_ttl);
        state.tokens.insert(
            token.clone(),
            Token {
                expires_at,
                exp,
                forced_expired: false,
            },
        );
        HttpReply::json(
            200,
            json!({ "token": token, "expires": iso_millis(now.checked_add(self.token_ttl).unwrap_or(now)) }),
        )
    }

    fn create_host(
        &self,
        flavor: NpmFlavor,
        state: &mut State,
        request: &HttpRequest,
        access: Access,
    ) -> Result<HttpReply, Failure> {
        let body = read_body(flavor, request)?;
        let data = validate(&HOST_CREATE_SCHEMA, body.as_ref(), skipped(flavor))?;
        access.ok_or(Failure::Denied)?;
        if data.get("certificate_id").is_some_and(|c| c == "new") {
            // NPM would ask Let's Encrypt for a certificate here.
            return Err(Failure::Reply(internal(flavor, 500)));
        }
        check_domains(state, &data, None)?;
        let id = state.next_id;
        state.next_id += 1;
        let row = new_row(flavor, id, data);
        let reply = with_expansions(&row, &["owner", "certificate", "access_list"], &state.owner);
        // internalNginx.configure then records the (here always good) result.
        let mut stored = row;
        mark_configured(&mut stored);
        state.hosts.insert(id, stored);
        Ok(HttpReply::json(201, reply))
    }
}

/// How a proxy-host handler can end besides a reply of its own.
enum Failure {
    Reply(HttpReply),
    /// `access.can` refused (no token).
    Denied,
    /// Fell through to main.js's catch-all.
    CatchAll,
}

impl From<HttpReply> for Failure {
    fn from(reply: HttpReply) -> Failure {
        Failure::Reply(reply)
    }
}

fn list_hosts(flavor: NpmFlavor, state: &State, request: &HttpRequest, access: Access) -> Result<HttpReply, Failure> {
    let query = parse_query(request.query.as_deref());
    let search = single(&query, "query");
    if search.is_some_and(|q| q.is_empty() || q.chars().count() > 255) {
        return Err(internal(flavor, 400).into());
    }
    access.ok_or(Failure::Denied)?;
    // An unknown relation only fails when objection builds the query.
    let expand = expansions(flavor, &query)?;
    let mut rows: Vec<&Map<String, Value>> = state
        .hosts
        .values()
        // SQLite's LIKE '%q%' on the JSON text: ASCII case-insensitive.
        .filter(|row| search.is_none_or(|q| names_text(row).to_lowercase().contains(&q.to_lowercase())))
        .collect();
    rows.sort_by_cached_key(|row| (names_text(row), row.get("id").and_then(Value::as_i64)));
    let list: Vec<Value> = rows
        .into_iter()
        .map(|row| with_expansions(row, &expand, &state.owner))
        .collect();
    Ok(HttpReply::json(200, Value::Array(list)))
}

fn get_host(
    flavor: NpmFlavor,
    state: &State,
    request: &HttpRequest,
    raw_id: &str,
    access: Access,
) -> Result<HttpReply, Failure> {
    let query = parse_query(request.query.as_deref());
    // The route validates host_id against common#/properties/id (coerced
    // integer >= 1) with the internal validator, whose errors are not public.
    let id = coerce_int(&Value::String(raw_id.to_string())).filter(|id| *id >= 1);
    let Some(id) = id else {
        return Err(internal(flavor, 400).into());
    };
    access.ok_or(Failure::Denied)?;
    let expand = expansions(flavor, &query)?;
    let row = state
        .hosts
        .get(&id)
        .ok_or_else(|| not_found(flavor, Some(id.to_string())))?;
    Ok(HttpReply::json(200, with_expansions(row, &expand, &state.owner)))
}

fn update_host(
    flavor: NpmFlavor,
    state: &mut State,
    request: &HttpRequest,
    raw_id: &str,
    access: Access,
) -> Result<HttpReply, Failure> {
    let body = read_body(flavor, request)?;
    let data = validate(&HOST_UPDATE_SCHEMA, body.as_ref(), skipped(flavor))?;
    let id = parse_int(raw_id);
    access.ok_or(Failure::Denied)?;
    if data.get("certificate_id").is_some_and(|c| c == "new") {
        return Err(internal(flavor, 500).into());
    }
    check_domains(state, &data, id.filter(|id| *id != 0))?;
    let shown = id.filter(|id| *id != 0).map(|id| id.to_string());
    let Some(existing) = id.and_then(|id| state.hosts.get(&id)) else {
        return Err(not_found(flavor, shown).into());
    };
    let mut row = existing.clone();
    for (key, value) in data {
        row.insert(key, value);
    }
    sort_names(&mut row);
    clean_ssl_hsts(&mut row);
    row.insert("modified_on".into(), json!(sql_datetime(SystemTime::now())));
    // Only an enabled host is (re)configured, which refreshes its meta.
    if row.get("enabled") == Some(&Value::Bool(true)) {
        mark_configured(&mut row);
    }
    let reply = with_expansions(&row, &["owner", "certificate", "access_list"], &state.owner);
    if let Some(id) = id {
        state.hosts.insert(id, row);
    }
    Ok(HttpReply::json(200, reply))
}

fn delete_host(flavor: NpmFlavor, state: &mut State, raw_id: &str, access: Access) -> Result<HttpReply, Failure> {
    let id = parse_int(raw_id);
    access.ok_or(Failure::Denied)?;
    match id.and_then(|id| state.hosts.remove(&id)) {
        Some(_) => Ok(HttpReply::json(200, json!(true))),
        None => Err(not_found(flavor, id.filter(|id| *id != 0).map(|id| id.to_string())).into()),
    }
}

/// `internalHost.isHostnameTaken` for every requested name, in request order.
fn check_domains(state: &State, data: &Map<String, Value>, ignore: Option<i64>) -> Result<(), HttpReply> {
    let Some(Value::Array(names)) = data.get("domain_names") else {
        return Ok(());
    };
    for name in names.iter().filter_map(Value::as_str) {
        let wanted = name.to_lowercase();
        let taken = state
            .hosts
            .iter()
            .filter(|(id, _)| Some(**id) != ignore)
            .any(|(_, row)| {
                row.get("domain_names")
                    .and_then(Value::as_array)
                    .is_some_and(|existing| {
                        existing
                            .iter()
                            .filter_map(Value::as_str)
                            .any(|e| e.to_lowercase() == wanted)
                    })
            });
        if taken {
            return Err(error(400, &format!("{name} is already in use")));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Rows.

/// A full row: NPM's column defaults (migrations), then `data`, then what
/// `create` and the model hooks do: owner 1, sorted names, SSL/HSTS cleanup.
fn new_row(flavor: NpmFlavor, id: i64, data: Map<String, Value>) -> Map<String, Value> {
    let now = sql_datetime(SystemTime::now());
    let mut row = json!({
        "id": id,
        "created_on": now,
        "modified_on": now,
        "owner_user_id": 1,
        "domain_names": [],
        "forward_host": "",
        "forward_port": 80,
        "access_list_id": 0,
        "certificate_id": 0,
        "ssl_forced": false,
        "caching_enabled": false,
        "block_exploits": false,
        "advanced_config": "",
        "meta": {},
        "allow_websocket_upgrade": false,
        "http2_support": false,
        "forward_scheme": "http",
        "enabled": true,
        // A nullable JSON column without a default: a host created without
        // `locations` reads back as null, not [].
        "locations": null,
        "hsts_enabled": false,
        "hsts_subdomains": false,
    });
    let Some(row_map) = row.as_object_mut() else {
        return Map::new();
    };
    if flavor != NpmFlavor::V2_12 {
        row_map.insert("trust_forwarded_proto".into(), json!(false));
    }
    for (key, value) in data {
        if !matches!(key.as_str(), "id" | "created_on" | "modified_on") {
            row_map.insert(key, value);
        }
    }
    let mut row = std::mem::take(row_map);
    sort_names(&mut row);
    clean_ssl_hsts(&mut row);
    row
}

fn sort_names(row: &mut Map<String, Value>) {
    if let Some(Value::Array(names)) = row.get_mut("domain_names") {
        names.sort_by(|a, b| a.as_str().unwrap_or("").cmp(b.as_str().unwrap_or("")));
    }
}

/// `internalHost.cleanSslHstsData`: no certificate, no forced SSL or HTTP/2; no
/// forced SSL, no HSTS; no HSTS, no HSTS for subdomains.
fn clean_ssl_hsts(row: &mut Map<String, Value>) {
    let truthy = |row: &Map<String, Value>, key: &str| match row.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        _ => false,
    };
    if !truthy(row, "certificate_id") {
        row.insert("ssl_forced".into(), json!(false));
        row.insert("http2_support".into(), json!(false));
    }
    if !truthy(row, "ssl_forced") {
        row.insert("hsts_enabled".into(), json!(false));
    }
    if !truthy(row, "hsts_enabled") {
        row.insert("hsts_subdomains".into(), json!(false));
    }
}

fn mark_configured(row: &mut Map<String, Value>) {
    let mut meta = match row.get("meta") {
        Some(Value::Object(meta)) => meta.clone(),
        _ => Map::new(),
    };
    meta.insert("nginx_online".into(), json!(true));
    meta.insert("nginx_err".into(), Value::Null);
    row.insert("meta".into(), Value::Object(meta));
}

fn names_text(row: &Map<String, Value>) -> String {
    row.get("domain_names").map(Value::to_string).unwrap_or_default()
}

fn with_expansions<S: AsRef<str>>(row: &Map<String, Value>, expand: &[S], owner: &Value) -> Value {
    let mut out = row.clone();
    for relation in expand {
        match relation.as_ref() {
            "owner" => {
                out.insert("owner".into(), owner.clone());
            }
            // The fake has no certificates or access lists: NPM's join finds none.
            "certificate" => {
                out.insert("certificate".into(), Value::Null);
            }
            "access_list" => {
                out.insert("access_list".into(), Value::Null);
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// `?expand=a,b` as the routes read it; an unknown relation makes objection
/// throw, which NPM reports as a 500.
fn expansions(flavor: NpmFlavor, query: &[(String, String)]) -> Result<Vec<String>, HttpReply> {
    let Some(expand) = single(query, "expand") else {
        return Ok(Vec::new());
    };
    let mut relations = Vec::new();
    for part in expand.split(',') {
        let part = part.trim();
        // "access_list.[clients,items]" arrives split at its comma.
        let base = part.split(['.', '[']).next().unwrap_or("");
        match base {
            "owner" | "certificate" | "access_list" => relations.push(base.to_string()),
            _ if part.ends_with(']') => {}
            _ => return Err(internal(flavor, 500)),
        }
    }
    Ok(relations)
}

// ---------------------------------------------------------------------------
// Request parsing.

fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// A query parameter given exactly once: Express makes a repeated one an array,
/// which the routes then ignore.
fn single<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut values = query.iter().filter(|(k, _)| k == name);
    match (values.next(), values.next()) {
        (Some((_, v)), None) => Some(v.as_str()),
        _ => None,
    }
}

/// body-parser's JSON reading: only for `Content-Type: application/json`;
/// otherwise the body stays undefined (v2.13+, body-parser 2) or `{}` (v2.12).
fn read_body(flavor: NpmFlavor, request: &HttpRequest) -> Result<Option<Value>, HttpReply> {
    let is_json = request
        .header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Ok((flavor == NpmFlavor::V2_12).then(|| json!({})));
    }
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(json!({})));
    }
    // Strict mode: the body must be an object or an array.
    let first = request.body.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{') | Some(b'[')) {
        return Err(internal(flavor, 400));
    }
    serde_json::from_slice(&request.body)
        .map(Some)
        .map_err(|_| internal(flavor, 400))
}

/// JavaScript's `parseInt(s, 10)`: leading digits after optional space and
/// sign; None for NaN.
fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let digits: String = digits.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    let value = digits.parse::<i64>().unwrap_or(i64::MAX);
    Some(if negative { -value } else { value })
}

// ---------------------------------------------------------------------------
// Validation: the subset of ajv (allErrors, coerceTypes) NPM's schemas use.

#[derive(Clone, Copy)]
enum Ty {
    Bool,
    Int { min: i64, max: i64 },
    Str { min: usize, max: usize },
    Enum(&'static [&'static str]),
    DomainNames,
    Object,
    Locations,
    CertificateId,
    IntOrNull,
}

struct Schema {
    props: &'static [(&'static str, Ty)],
    required: &'static [&'static str],
    min_props: usize,
}

const SCHEME: Ty = Ty::Enum(&["http", "https"]);
const HOST: Ty = Ty::Str { min: 1, max: 255 };
const PORT: Ty = Ty::Int { min: 1, max: 65535 };
const TEXT: Ty = Ty::Str {
    min: 0,
    max: usize::MAX,
};

/// The writable fields of `paths/nginx/proxy-hosts/post.json`, in its order.
const HOST_PROPS: &[(&str, Ty)] = &[
    ("domain_names", Ty::DomainNames),
    ("forward_scheme", SCHEME),
    ("forward_host", HOST),
    ("forward_port", PORT),
    ("certificate_id", Ty::CertificateId),
    ("ssl_forced", Ty::Bool),
    ("hsts_enabled", Ty::Bool),
    ("hsts_subdomains", Ty::Bool),
    ("trust_forwarded_proto", Ty::Bool),
    ("http2_support", Ty::Bool),
    ("block_exploits", Ty::Bool),
    ("caching_enabled", Ty::Bool),
    ("allow_websocket_upgrade", Ty::Bool),
    ("access_list_id", Ty::Int { min: 0, max: i64::MAX }),
    ("advanced_config", TEXT),
    ("enabled", Ty::Bool),
    ("meta", Ty::Object),
    ("locations", Ty::Locations),
];

const HOST_CREATE_SCHEMA: Schema = Schema {
    props: HOST_PROPS,
    required: &["domain_names", "forward_scheme", "forward_host", "forward_port"],
    min_props: 0,
};

const HOST_UPDATE_SCHEMA: Schema = Schema {
    props: HOST_PROPS,
    required: &[],
    min_props: 1,
};

const LOCATION_SCHEMA: Schema = Schema {
    props: &[
        ("id", Ty::IntOrNull),
        (
            "path",
            Ty::Str {
                min: 1,
                max: usize::MAX,
            },
        ),
        ("forward_scheme", SCHEME),
        ("forward_host", HOST),
        ("forward_port", PORT),
        ("forward_path", TEXT),
        ("advanced_config", TEXT),
    ],
    required: &["forward_scheme", "forward_host", "forward_port", "path"],
    min_props: 0,
};

const TOKEN_SCHEMA: Schema = Schema {
    props: &[
        (
            "identity",
            Ty::Str {
                min: 1,
                max: usize::MAX,
            },
        ),
        ("scope", Ty::Enum(&["user"])),
        (
            "secret",
            Ty::Str {
                min: 1,
                max: usize::MAX,
            },
        ),
    ],
    required: &["identity", "secret"],
    min_props: 0,
};

/// Fields a flavor's schema does not have yet.
fn skipped(flavor: NpmFlavor) -> &'static [&'static str] {
    if flavor == NpmFlavor::V2_12 {
        &["trust_forwarded_proto"]
    } else {
        &[]
    }
}

const DOMAIN_PATTERN: &str = r#"^[^&| @!#%^();:/\\}{=+?<>,~`'"]+$"#;
const DOMAIN_FORBIDDEN: &str = r#"&| @!#%^();:/\}{=+?<>,~`'""#;

/// `lib/validator/api.js`: the coerced payload, or 400 with ajv's errorsText.
fn validate(schema: &Schema, body: Option<&Value>, skip: &[&str]) -> Result<Map<String, Value>, HttpReply> {
    let Some(body) = body else {
        return Err(error(400, "Payload is undefined"));
    };
    let mut errors = Vec::new();
    let data = validate_object(schema, body, "data", skip, &mut errors);
    match data {
        Some(data) if errors.is_empty() => Ok(data),
        _ => Err(error(400, &errors.join(", "))),
    }
}

/// Keyword order follows ajv: type, minProperties, required,
/// additionalProperties, then each property in schema order.
fn validate_object(
    schema: &Schema,
    value: &Value,
    path: &str,
    skip: &[&str],
    errors: &mut Vec<String>,
) -> Option<Map<String, Value>> {
    let Value::Object(map) = value else {
        errors.push(format!("{path} must be object"));
        return None;
    };
    let known = |name: &str| schema.props.iter().any(|(p, _)| *p == name) && !skip.contains(&name);
    if map.len() < schema.min_props {
        errors.push(format!(
            "{path} must NOT have fewer than {} properties",
            schema.min_props
        ));
    }
    for name in schema.required {
        if !map.contains_key(*name) {
            errors.push(format!("{path} must have required property '{name}'"));
        }
    }
    for key in map.keys() {
        if !known(key) {
            errors.push(format!("{path} must NOT have additional properties"));
        }
    }
    let mut out = Map::new();
    for (name, ty) in schema.props {
        if let Some(value) = map.get(*name).filter(|_| known(name))
            && let Some(coerced) = check(*ty, value, &format!("{path}/{name}"), errors)
        {
            out.insert((*name).to_string(), coerced);
        }
    }
    Some(out)
}

/// Records `<path> <message>` and yields nothing.
fn fail(errors: &mut Vec<String>, path: &str, message: &str) -> Option<Value> {
    errors.push(format!("{path} {message}"));
    None
}

fn check(ty: Ty, value: &Value, path: &str, errors: &mut Vec<String>) -> Option<Value> {
    match ty {
        Ty::Bool => match coerce_bool(value) {
            Some(b) => Some(Value::Bool(b)),
            None => fail(errors, path, "must be boolean"),
        },
        Ty::Int { min, max } => match coerce_int(value) {
            None => fail(errors, path, "must be integer"),
            Some(n) if n < min => fail(errors, path, &format!("must be >= {min}")),
            Some(n) if n > max => fail(errors, path, &format!("must be <= {max}")),
            Some(n) => Some(json!(n)),
        },
        Ty::Str { min, max } => match coerce_str(value) {
            None => fail(errors, path, "must be string"),
            Some(s) if s.chars().count() < min => {
                fail(errors, path, &format!("must NOT have fewer than {min} characters"))
            }
            Some(s) if s.chars().count() > max => {
                fail(errors, path, &format!("must NOT have more than {max} characters"))
            }
            Some(s) => Some(Value::String(s)),
        },
        Ty::Enum(allowed) => match coerce_str(value) {
            None => fail(errors, path, "must be string"),
            Some(s) if allowed.contains(&s.as_str()) => Some(Value::String(s)),
            Some(_) => fail(errors, path, "must be equal to one of the allowed values"),
        },
        Ty::Object => match value {
            Value::Object(_) => Some(value.clone()),
            _ => fail(errors, path, "must be object"),
        },
        Ty::DomainNames => check_domain_names(value, path, errors),
        Ty::Locations => {
            let Value::Array(items) = value else {
                return fail(errors, path, "must be array");
            };
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Some(location) = validate_object(&LOCATION_SCHEMA, item, &format!("{path}/{i}"), &[], errors) {
                    out.push(Value::Object(location));
                }
            }
            Some(Value::Array(out))
        }
        Ty::CertificateId => match (coerce_int(value), value.as_str()) {
            (Some(n), _) if n >= 0 => Some(json!(n)),
            (_, Some("new")) => Some(json!("new")),
            (int, _) => {
                fail(
                    errors,
                    path,
                    if int.is_some() {
                        "must be >= 0"
                    } else {
                        "must be integer"
                    },
                );
                let pattern = if coerce_str(value).is_some() {
                    "must match pattern \"^new$\""
                } else {
                    "must be string"
                };
                fail(errors, path, pattern);
                fail(errors, path, "must match a schema in anyOf")
            }
        },
        Ty::IntOrNull => match (value, coerce_int(value)) {
            (Value::Null, _) => Some(Value::Null),
            (_, Some(n)) => Some(json!(n)),
            _ => fail(errors, path, "must be integer,null"),
        },
    }
}

/// `common#/properties/domain_names`: array, 1 to 100 items, unique, each a
/// string matching DOMAIN_PATTERN.
fn check_domain_names(value: &Value, path: &str, errors: &mut Vec<String>) -> Option<Value> {
    let Value::Array(items) = value else {
        errors.push(format!("{path} must be array"));
        return None;
    };
    let before = errors.len();
    if items.len() > 100 {
        errors.push(format!("{path} must NOT have more than 100 items"));
    }
    if items.is_empty() {
        errors.push(format!("{path} must NOT have fewer than 1 items"));
    }
    // ajv's uniqueItems compares the string items, scanning from the end.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for i in (0..items.len()).rev() {
        if let Some(s) = items[i].as_str() {
            if let Some(j) = seen.get(s) {
                errors.push(format!(
                    "{path} must NOT have duplicate items (items ## {j} and {i} are identical)"
                ));
                break;
            }
            seen.insert(s, i);
        }
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match coerce_str(item) {
            None => errors.push(format!("{path}/{i} must be string")),
            Some(s) if s.is_empty() || s.contains(|c| DOMAIN_FORBIDDEN.contains(c)) => {
                errors.push(format!("{path}/{i} must match pattern \"{DOMAIN_PATTERN}\""));
            }
            Some(s) => out.push(Value::String(s)),
        }
    }
    (errors.len() == before).then_some(Value::Array(out))
}

/// ajv's coercion to boolean.
fn coerce_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Null => Some(false),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        Value::Number(n) if n.as_f64() == Some(1.0) => Some(true),
        Value::Number(n) if n.as_f64() == Some(0.0) => Some(false),
        _ => None,
    }
}

/// ajv's coercion to integer: integral numbers, numeric strings (JavaScript's
/// `x == +x`), booleans (1/0) and null (0).
fn coerce_int(value: &Value) -> Option<i64> {
    let from_f64 = |f: f64| (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18).then_some(f as i64);
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(from_f64)),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Null => Some(0),
        Value::String(s) if s.is_empty() => None,
        Value::String(s) if s.trim().is_empty() => Some(0),
        Value::String(s) => {
            let t = s.trim();
            // Rust would also read "inf" and "nan", which JavaScript does not.
            if t.chars().any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E') {
                return None;
            }
            t.parse::<f64>().ok().and_then(from_f64)
        }
        _ => None,
    }
}

/// ajv's coercion to string.
fn coerce_str(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(schema: &Schema, value: Value) -> String {
        match validate(schema, Some(&value), &[]) {
            Ok(_) => String::new(),
            Err(reply) => reply
                .body
                .map(|b| b["error"]["message"].to_string())
                .unwrap_or_default(),
        }
    }

    #[test]
    fn validation_speaks_ajv() {
        let ok =
            json!({ "domain_names": ["a.cube"], "forward_scheme": "http", "forward_host": "x", "forward_port": 1 });
        assert_eq!(errors_of(&HOST_CREATE_SCHEMA, ok.clone()), "");
        let mut bad = ok.clone();
        bad["forward_port"] = json!("abc");
        assert_eq!(
            errors_of(&HOST_CREATE_SCHEMA, bad),
            "\"data/forward_port must be integer\""
        );
        let mut bad = ok.clone();
        bad["id"] = json!(3);
        assert_eq!(
            errors_of(&HOST_CREATE_SCHEMA, bad),
            "\"data must NOT have additional properties\""
        );
        assert_eq!(
            errors_of(
                &HOST_CREATE_SCHEMA,
                json!({ "domain_names": [], "forward_scheme": "ftp" })
            ),
            "\"data must have required property 'forward_host', data must have required property 'forward_port', \
             data/domain_names must NOT have fewer than 1 items, data/forward_scheme must be equal to one of the \
             allowed values\""
        );
        assert_eq!(
            errors_of(&HOST_UPDATE_SCHEMA, json!({})),
            "\"data must NOT have fewer than 1 properties\""
        );
        assert_eq!(
            errors_of(&HOST_UPDATE_SCHEMA, json!({ "domain_names": ["a b", "x", "x"] })),
            format!(
                "{:?}",
                format!(
                    "data/domain_names must NOT have duplicate items (items ## 2 and 1 are identical), \
                     data/domain_names/0 must match pattern \"{DOMAIN_PATTERN}\""
                )
            )
        );
        let coerced = validate(
            &HOST_UPDATE_SCHEMA,
            Some(&json!({ "forward_port": "8080", "enabled": "false" })),
            &[],
        );
        assert_eq!(
            coerced.ok().map(Value::Object),
            Some(json!({ "forward_port": 8080, "enabled": false }))
        );
    }

    #[test]
    fn ids_parse_like_javascript() {
        assert_eq!(parse_int("12"), Some(12));
        assert_eq!(parse_int("12abc"), Some(12));
        assert_eq!(parse_int(" -3"), Some(-3));
        assert_eq!(parse_int("abc"), None);
        assert_eq!(coerce_int(&json!("1e3")), Some(1000));
        assert_eq!(coerce_int(&json!("1.5")), None);
        assert_eq!(coerce_int(&json!("inf")), None);
    }
}
