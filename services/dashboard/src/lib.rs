//! The web dashboard: the box's face for a phone or a laptop on its network.
//!
//! # Background
//! The dashboard is one of the three kinds of users the bus is built for. It is a
//! browser page that talks to the box only as a third-party MQTT client would:
//! MQTT 3.1.1 over WebSocket through the gate, signing in with a password or a
//! session token, rendering the retained state topics and calling commands.
//!
//! # Design
//! - `cubeos up` serves it on `dashboard.listen` (the seed's port 6011). A request
//!   for `/mqtt` asking to upgrade to WebSocket is handed, unanswered, to the gate
//!   ([`cubeos_broker::gate::WebSocketDoor`]), which serves it exactly as one
//!   reaching its own WebSocket listener. Page and bus share one origin, so the
//!   reverse proxy's `cubeos.cube` host reaches both.
//! - The page's files are embedded in the binary ([`assets`]) and served
//!   gzip-compressed when the browser accepts it; nothing is fetched at run time.
//!   They are plain ES modules written to run as they are: building the binary
//!   needs no Node and there is no bundler output to go stale. The one file from
//!   elsewhere, MQTT.js's browser build, is vendored and checked against the
//!   version the tests lock (`tests/js`).
//! - App icons come from the box's store copy and from installed apps' own
//!   config dirs ([`icons`]); a missing one is a 404 the page answers with a
//!   generated placeholder.
//! - The HTTP side is the least a browser needs: `GET` and `HEAD`, one request per
//!   connection, a bounded head read within a timeout, a time limit per connection
//!   and caps on connections at once (in all and per address), so strangers on the
//!   hotspot cannot hold the box's memory or its slots before signing in. A
//!   WebSocket upgrade must come from the box's own page (`Origin` matches `Host`).
//!
//! # Limitations
//! - No TLS: on the hotspot the box is reached over plain HTTP, as its proxy is.
//! - Behind the reverse proxy every client's address is the proxy's (loopback), so
//!   the registry's sign-in throttle sees one address for all of them, and the
//!   per-address connection cap does not apply to them (only the global one and
//!   nginx's own limits do).

pub mod assets;
mod http;
pub mod icons;
mod rewind;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cubeos_broker::gate::WebSocketDoor;
use cubeos_kit::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::info;

use http::{Head, Response};

/// How long a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head read: a browser's is well under 4 KiB.
const MAX_HEAD: usize = 16 * 1024;

/// How long one connection may take, request and response: a client that stops
/// reading its response must not hold a slot for ever.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP connections served at once (WebSocket sessions, once handed over, count
/// against the gate's own limit instead).
const MAX_CONNECTIONS: usize = 64;

/// HTTP connections one address may have at once: a browser opens six.
const MAX_PER_ADDRESS: usize = 12;

/// Why the dashboard cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("cannot listen on {addr} (dashboard): {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// What every connection needs.
struct Server {
    config: Arc<Config>,
    door: WebSocketDoor,
    slots: Arc<Semaphore>,
    per_address: PerAddress,
}

/// Open connections per client address, at most `cap` each.
struct PerAddress {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One address's share of the connections, given back when dropped.
struct Share<'a> {
    of: &'a PerAddress,
    address: IpAddr,
}

impl PerAddress {
    fn new(cap: usize) -> Self {
        PerAddress {
            cap,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A share for `address`, unless it holds `cap` already.
    fn share(&self, address: IpAddr) -> Option<Share<'_>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(address).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Share { of: self, address })
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut open = self.of.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// Starts serving the dashboard; returns the address it listens on. It runs until
/// the process ends.
pub async fn start(config: Arc<Config>, door: WebSocketDoor) -> Result<SocketAddr, DashboardError> {
    let addr = config.dashboard.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| DashboardError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let server = Arc::new(Server {
        config,
        door,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        per_address: PerAddress::new(MAX_PER_ADDRESS),
    });
    // Compressing the page's files takes a Pi a noticeable moment: done once, off
    // the async threads, before the first browser asks.
    tokio::task::spawn_blocking(|| {
        assets::ASSETS.iter().for_each(|a| {
            a.gzipped();
        })
    });
    tokio::spawn(accept(listener, server));
    info!(listen = %local, "dashboard listening");
    Ok(local)
}

async fn accept(listener: TcpListener, server: Arc<Server>) {
    loop {
        let (stream, peer, slot) = cubeos_kit::listen::accept_bounded(&listener, &server.slots, "dashboard").await;
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            // Loopback is the box itself: its reverse proxy brings everyone from there.
            let share = match peer.ip() {
                ip if ip.is_loopback() => None,
                ip => match server.per_address.share(ip) {
                    Some(share) => Some(share),
                    None => return,
                },
            };
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, server.serve(stream, peer)).await;
            drop((share, slot));
        });
    }
}

impl Server {
    /// Reads one request and answers it, or hands a WebSocket upgrade to the gate.
    async fn serve(&self, mut stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let read = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
            Ok(Ok(read)) => read,
            Ok(Err(response)) => return respond(stream, response).await,
            Err(_) => return,
        };
        let Some(head) = Head::parse(&read) else {
            return respond(stream, Response::status(400, "bad request")).await;
        };
        if head.path() == "/mqtt" && head.is_websocket_upgrade() {
            // Another site's page in the same browser may not use the box's bus.
            if !head.same_origin() {
                return respond(stream, Response::status(403, "cross-origin WebSocket refused")).await;
            }
            // The gate answers the upgrade itself, from the bytes already read.
            self.door.enter(rewind::Rewind::new(read, stream), peer);
            return;
        }
        let response = self.answer(&head);
        respond(stream, response).await;
    }

    /// The response to a request that is not a WebSocket upgrade.
    fn answer(&self, head: &Head) -> Response {
        if head.method != "GET" && head.method != "HEAD" {
            return Response::status(405, "only GET and HEAD").header("Allow", "GET, HEAD");
        }
        let path = head.path();
        let response = if path == "/mqtt" {
            Response::status(426, "MQTT over WebSocket only").header("Upgrade", "websocket")
        } else if let Some(rest) = path.strip_prefix("/icons/") {
            icons::response(&self.config, rest)
        } else {
            match assets::find(path) {
                Some(asset) => assets::response(asset, head.accepts_gzip()),
                None => Response::status(404, "not found"),
            }
        };
        if response.status == 200 && response.etag().is_some() && head.header("if-none-match") == response.etag() {
            return Response::not_modified();
        }
        if head.method == "HEAD" {
            response.without_body()
        } else {
            response
        }
    }
}

/// Reads until the end of the request head, at most [`MAX_HEAD`] bytes. Returns
/// everything read (a WebSocket client may already have sent more).
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, Response> {
    let mut read = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| Response::status(400, "bad request"))?;
        if n == 0 {
            return Err(Response::status(400, "incomplete request"));
        }
        read.extend_from_slice(&chunk[..n]);
        if http::head_complete(&read) {
            return Ok(read);
        }
        if read.len() >= MAX_HEAD {
            return Err(Response::status(431, "request head too large"));
        }
    }
}

async fn respond(mut stream: TcpStream, response: Response) {
    let _ = stream.write_all(&response.into_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_cannot_take_every_connection() {
        let limit = PerAddress::new(2);
        let (phone, laptop): (IpAddr, IpAddr) = ([10, 42, 24, 5].into(), [10, 42, 24, 6].into());
        let first = limit.share(phone).expect("first");
        let _second = limit.share(phone).expect("second");
        assert!(limit.share(phone).is_none(), "a third from the same address");
        assert!(limit.share(laptop).is_some(), "another address is not held back");
        drop(first);
        assert!(
            limit.share(phone).is_some(),
            "a share is given back when its connection ends"
        );
        assert_eq!(
            limit.open.lock().unwrap().get(&laptop),
            None,
            "ended addresses are forgotten"
        );
    }
}
