//! Pi-hole v6: local DNS records through its REST API (`dns.hosts`, entries
//! `"<address> <name>"`), signed in with `POST /api/auth` and the session id in
//! `X-FTL-SID`.
//!
//! Pi-hole's records have no room for an owner, so the service keeps a ledger of the
//! entries it created (`<data>/proxy/pihole-owned.json`): only those are ever updated
//! or deleted; a person's own entries stay as they are, even for a name CubeOS wants
//! (that is reported as a conflict).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use cubeos_kit::config::PiholeConfig;
use cubeos_kit::secrets::SecretBox;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::backend::{BackendError, Outcome};
use crate::desired::Desired;
use crate::dnsmasq::{hosts_line, write};
use crate::http;

const WHAT: &str = "pihole";

pub struct Pihole {
    client: reqwest::Client,
    url: String,
    password: Result<Zeroizing<String>, BackendError>,
    sid: Option<Zeroizing<String>>,
    ledger: PathBuf,
    owned: Option<BTreeSet<String>>,
}

#[derive(Deserialize)]
struct AuthReply {
    session: Session,
}

#[derive(Deserialize)]
struct Session {
    valid: bool,
    sid: Option<String>,
}

#[derive(Deserialize)]
struct HostsReply {
    config: HostsConfig,
}

#[derive(Deserialize)]
struct HostsConfig {
    dns: HostsDns,
}

#[derive(Deserialize)]
struct HostsDns {
    hosts: Vec<String>,
}

impl Pihole {
    pub fn new(config: &PiholeConfig, key: Option<&SecretBox>, data_dir: &std::path::Path) -> Pihole {
        Pihole {
            client: http::client(),
            url: config.url.trim_end_matches('/').to_owned(),
            password: http::password(WHAT, &config.password, key),
            sid: None,
            ledger: data_dir.join("proxy").join("pihole-owned.json"),
            owned: None,
        }
    }

    async fn login(&mut self) -> Result<(), BackendError> {
        let password = self.password.as_ref().map_err(Clone::clone)?;
        let response = self
            .client
            .post(format!("{}/api/auth", self.url))
            .json(&serde_json::json!({ "password": password.as_str() }))
            .send()
            .await
            .map_err(|e| http::unreachable(WHAT, e))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(BackendError::Auth(WHAT));
        }
        if !response.status().is_success() {
            return Err(http::rejected(WHAT, response).await);
        }
        let reply: AuthReply = http::json(WHAT, response).await?;
        match (reply.session.valid, reply.session.sid) {
            (true, Some(sid)) => {
                self.sid = Some(Zeroizing::new(sid));
                Ok(())
            }
            _ => Err(BackendError::Auth(WHAT)),
        }
    }

    /// Sends a request with the session, signing in (again) when there is none or
    /// Pi-hole says it expired.
    async fn send(&mut self, method: Method, path: &str) -> Result<reqwest::Response, BackendError> {
        for attempt in 0..2 {
            if self.sid.is_none() {
                self.login().await?;
            }
            let sid = self.sid.as_ref().map(|s| s.to_string()).unwrap_or_default();
            let response = self
                .client
                .request(method.clone(), format!("{}{path}", self.url))
                .header("X-FTL-SID", sid)
                .send()
                .await
                .map_err(|e| http::unreachable(WHAT, e))?;
            if response.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.sid = None;
                continue;
            }
            return Ok(response);
        }
        Err(BackendError::Auth(WHAT))
    }

    async fn hosts(&mut self) -> Result<Vec<String>, BackendError> {
        let response = self.send(Method::GET, "/api/config/dns/hosts").await?;
        if !response.status().is_success() {
            return Err(http::rejected(WHAT, response).await);
        }
        let reply: HostsReply = http::json(WHAT, response).await?;
        Ok(reply.config.dns.hosts)
    }

    async fn change(&mut self, method: Method, entry: &str) -> Result<(), BackendError> {
        let path = format!("/api/config/dns/hosts/{}", utf8_percent_encode(entry, NON_ALPHANUMERIC));
        let response = self.send(method.clone(), &path).await?;
        let status = response.status();
        if status.is_success() || (method == Method::DELETE && status == StatusCode::NOT_FOUND) {
            // Added, or already gone: the goal holds.
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        if method == Method::PUT && status == StatusCode::BAD_REQUEST && body.contains("Item already present") {
            return Ok(());
        }
        Err(http::refused(WHAT, status, &body))
    }

    /// The entries this service created, read from disk on the first pass and
    /// kept in memory from then on.
    async fn take_ledger(&mut self) -> BTreeSet<String> {
        match self.owned.take() {
            Some(owned) => owned,
            None => tokio::fs::read(&self.ledger)
                .await
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default(),
        }
    }

    pub async fn sync(&mut self, want: &Desired) -> Result<Outcome, BackendError> {
        let mut hosts = self.hosts().await?;
        let mut owned = self.take_ledger().await;
        let before = owned.clone();
        // An owned entry deleted behind our back is no longer ours to track.
        owned.retain(|e| hosts.contains(e));
        let mut outcome = Outcome::default();
        let applied = self.apply(want, &mut hosts, &mut owned, &mut outcome).await;
        // Saved even when a change failed half-way: what was created is ours, and a
        // later pass must still be allowed to remove it.
        let saved = if owned == before {
            Ok(())
        } else {
            write(&self.ledger, &serde_json::to_string_pretty(&owned).unwrap_or_default()).await
        };
        self.owned = Some(owned);
        applied?;
        saved?;
        outcome.actual = parse(&hosts)
            .into_iter()
            .map(|(name, lines)| {
                let addrs: Vec<&str> = lines.iter().filter_map(|l| l.split_whitespace().next()).collect();
                (name, addrs.join(","))
            })
            .collect();
        Ok(outcome)
    }

    /// Adds what is missing and removes what is stale, keeping `hosts` (Pi-hole's
    /// list) and `owned` in step with every change made.
    async fn apply(
        &mut self,
        want: &Desired,
        hosts: &mut Vec<String>,
        owned: &mut BTreeSet<String>,
        outcome: &mut Outcome,
    ) -> Result<(), BackendError> {
        let wanted: BTreeMap<String, &String> = want.records.iter().map(|(n, ip)| (entry(*ip, n), n)).collect();
        // Names a person's entry holds.
        let foreign: BTreeSet<String> = parse(hosts)
            .into_iter()
            .filter(|(_, lines)| lines.iter().any(|l| !owned.contains(*l)))
            .map(|(name, _)| name)
            .collect();
        for (line, name) in &wanted {
            if hosts.contains(line) {
                continue;
            }
            if foreign.contains(*name) {
                outcome.conflicts.push((*name).clone());
                continue;
            }
            self.change(Method::PUT, line).await?;
            hosts.push(line.clone());
            owned.insert(line.clone());
            outcome.created += 1;
        }
        let stale: Vec<String> = owned.iter().filter(|e| !wanted.contains_key(*e)).cloned().collect();
        for line in stale {
            self.change(Method::DELETE, &line).await?;
            hosts.retain(|h| *h != line);
            owned.remove(&line);
            outcome.deleted += 1;
        }
        Ok(())
    }
}

fn entry(ip: IpAddr, name: &str) -> String {
    format!("{ip} {name}")
}

/// name -> the entries that name it (a trailing `# comment` names nothing).
fn parse(entries: &[String]) -> BTreeMap<String, Vec<&String>> {
    let mut by_name: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for line in entries {
        for name in hosts_line(line).into_iter().flat_map(|(_, names)| names) {
            by_name.entry(name.to_ascii_lowercase()).or_default().push(line);
        }
    }
    by_name
}
