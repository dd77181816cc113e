//! Nginx Proxy Manager: proxy hosts through its REST API, signed in with
//! `POST /api/tokens` and the token as a Bearer. A host this service creates
//! carries the marker as its `advanced_config` (a comment, harmless to nginx); hosts
//! without it are a person's and never changed, even for a name CubeOS wants.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cubeos_kit::config::NpmConfig;
use cubeos_kit::secrets::SecretBox;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::backend::{BackendError, MARKER, Outcome};
use crate::desired::{Desired, Route};
use crate::http;
use crate::plan::plan;

const WHAT: &str = "npm";

pub struct Npm {
    client: reqwest::Client,
    url: String,
    email: String,
    password: Result<Zeroizing<String>, BackendError>,
    /// The token and when to stop using it (a minute before NPM's expiry).
    token: Option<(Zeroizing<String>, Instant)>,
}

#[derive(Deserialize)]
struct TokenReply {
    token: String,
}

/// A host as NPM lists it: the fields this service compares.
#[derive(Debug, Clone, Deserialize)]
struct Host {
    id: i64,
    #[serde(default)]
    domain_names: Vec<String>,
    #[serde(default)]
    forward_host: String,
    #[serde(default)]
    forward_port: u16,
    #[serde(default)]
    forward_scheme: String,
    #[serde(default)]
    allow_websocket_upgrade: bool,
    #[serde(default)]
    advanced_config: String,
}

/// The part of a host this service decides.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    host: String,
    port: u16,
    websocket: bool,
}

impl From<&Route> for Shape {
    fn from(r: &Route) -> Shape {
        Shape {
            host: r.host.clone(),
            port: r.port,
            websocket: r.websocket,
        }
    }
}

impl Npm {
    pub fn new(config: &NpmConfig, key: Option<&SecretBox>) -> Npm {
        Npm {
            client: http::client(),
            url: config.url.trim_end_matches('/').to_owned(),
            email: config.email.clone(),
            password: http::password(WHAT, &config.password, key),
            token: None,
        }
    }

    async fn login(&mut self) -> Result<(), BackendError> {
        let password = self.password.as_ref().map_err(Clone::clone)?;
        let response = self
            .client
            .post(format!("{}/api/tokens", self.url))
            .json(&json!({ "identity": self.email, "secret": password.as_str() }))
            .send()
            .await
            .map_err(|e| http::unreachable(WHAT, e))?;
        // NPM up to 2.12 answers a bad login with 401, later releases with 400.
        if response.status().is_client_error() {
            return Err(BackendError::Auth(WHAT));
        }
        if !response.status().is_success() {
            return Err(http::rejected(WHAT, response).await);
        }
        let reply: TokenReply = http::json(WHAT, response).await?;
        // NPM tokens last a day; signing in again after an hour bounds the damage of
        // a clock that disagrees with NPM's, and 401 triggers a new one anyway.
        self.token = Some((Zeroizing::new(reply.token), Instant::now() + Duration::from_secs(3600)));
        Ok(())
    }

    /// Sends a request with the token, signing in again when NPM no longer takes it,
    /// and returns the status and body. Releases differ in how they say so: 401
    /// (up to 2.12), 400 "Token has expired", 403 or 404 for a missing token, 500 for
    /// a token it did not issue; a retry after a fresh sign-in settles which it was.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String), BackendError> {
        for attempt in 0..2 {
            if self.token.as_ref().is_none_or(|(_, until)| Instant::now() >= *until) {
                self.login().await?;
            }
            let token = self.token.as_ref().map(|(t, _)| t.to_string()).unwrap_or_default();
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.url))
                .bearer_auth(token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| http::unreachable(WHAT, e))?;
            let status = response.status();
            let text = response.text().await.map_err(|e| http::unreachable(WHAT, e))?;
            if attempt == 0 && token_refused(status, &text) {
                self.token = None;
                continue;
            }
            return Ok((status, text));
        }
        Err(BackendError::Auth(WHAT))
    }

    async fn hosts(&mut self) -> Result<Vec<Host>, BackendError> {
        let (status, text) = self.send(Method::GET, "/api/nginx/proxy-hosts", None).await?;
        if !status.is_success() {
            return Err(http::refused(WHAT, status, &text));
        }
        serde_json::from_str(&text).map_err(|e| BackendError::Rejected(WHAT, format!("unexpected host list: {e}")))
    }

    async fn expect_ok(&mut self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, BackendError> {
        let (status, text) = self.send(method.clone(), path, body).await?;
        if method == Method::DELETE && status == StatusCode::NOT_FOUND {
            return Ok(Value::Null);
        }
        if !status.is_success() {
            return Err(http::refused(WHAT, status, &text));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn sync(&mut self, want: &Desired) -> Result<Outcome, BackendError> {
        let hosts = self.hosts().await?;
        let key = |h: &Host| h.domain_names.first().map(|d| d.to_ascii_lowercase());
        let mut ids: BTreeMap<String, i64> = BTreeMap::new();
        let mut owned: BTreeMap<String, Shape> = BTreeMap::new();
        let mut foreign: BTreeMap<String, i64> = BTreeMap::new();
        for host in &hosts {
            let Some(name) = key(host) else { continue };
            if host.advanced_config.starts_with(MARKER) && host.forward_scheme == "http" {
                ids.insert(name.clone(), host.id);
                owned.insert(
                    name,
                    Shape {
                        host: host.forward_host.clone(),
                        port: host.forward_port,
                        websocket: host.allow_websocket_upgrade,
                    },
                );
            } else {
                for domain in &host.domain_names {
                    foreign.insert(domain.to_ascii_lowercase(), host.id);
                }
            }
        }
        let desired: BTreeMap<String, Shape> = want
            .routes
            .iter()
            .filter(|(name, _)| !foreign.contains_key(*name))
            .map(|(name, route)| (name.clone(), Shape::from(route)))
            .collect();
        let mut outcome = Outcome {
            conflicts: want
                .routes
                .keys()
                .filter(|n| foreign.contains_key(*n))
                .cloned()
                .collect(),
            ..Outcome::default()
        };
        let changes = plan(&desired, &owned);
        for (name, shape) in &changes.create {
            let created = self
                .expect_ok(Method::POST, "/api/nginx/proxy-hosts", Some(&body(name, shape)))
                .await?;
            if let Some(id) = created["id"].as_i64() {
                ids.insert(name.to_string(), id);
            }
            outcome.created += 1;
        }
        for (name, shape) in &changes.update {
            let id = ids.get(*name).copied().unwrap_or_default();
            self.expect_ok(
                Method::PUT,
                &format!("/api/nginx/proxy-hosts/{id}"),
                Some(&body(name, shape)),
            )
            .await?;
            outcome.updated += 1;
        }
        for name in &changes.delete {
            if let Some(id) = ids.remove(*name) {
                self.expect_ok(Method::DELETE, &format!("/api/nginx/proxy-hosts/{id}"), None)
                    .await?;
                outcome.deleted += 1;
            }
        }
        outcome.actual = desired
            .iter()
            .map(|(name, s)| (name.clone(), format!("{}:{}", s.host, s.port)))
            .collect();
        outcome.proxy_ids = ids;
        Ok(outcome)
    }
}

/// Whether NPM refused the token rather than the request.
fn token_refused(status: StatusCode, body: &str) -> bool {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::INTERNAL_SERVER_ERROR => true,
        StatusCode::BAD_REQUEST => body.contains("Token has expired") || body.contains("Empty token"),
        // 2.13-2.15 answer a missing token with "Not Found - /nginx/...".
        StatusCode::NOT_FOUND => {
            body.contains("/nginx/proxy-hosts") && !body.contains("Not Found - /nginx/proxy-hosts/")
        }
        _ => false,
    }
}

/// The proxy host NPM is asked to create or become.
fn body(name: &str, shape: &Shape) -> Value {
    json!({
        "domain_names": [name],
        "forward_scheme": "http",
        "forward_host": shape.host,
        "forward_port": shape.port,
        "allow_websocket_upgrade": shape.websocket,
        "block_exploits": true,
        "caching_enabled": false,
        "access_list_id": 0,
        "certificate_id": 0,
        "ssl_forced": false,
        "http2_support": false,
        "hsts_enabled": false,
        "hsts_subdomains": false,
        "advanced_config": format!("{MARKER}\n"),
        "meta": {},
        "locations": [],
    })
}
