//! FAKES: in-process HTTP "contract servers" that stand in for Pi-hole v6 and
//! Nginx Proxy Manager in tests, because neither can run on this machine.
//!
//! They are not the real programs. What they do is enforce the parts of the real
//! APIs' contracts that CubeOS's clients touch: authentication and its expiry,
//! paths, methods, status codes, JSON shapes, id allocation and the validation
//! errors. Each detail was checked against the real sources (Pi-hole FTL's
//! `src/api` and its OpenAPI specs; NPM's `backend/`), and each file says at its
//! top what it enforces and what it leaves out. A client that passes against a
//! fake can still fail against the real thing where a file says "not modelled".
//!
//! This module holds what both fakes share: a tiny HTTP/1.1 server on a loopback
//! port whose task (and every connection task) ends when the fake is dropped, and
//! the date formatting the JSON bodies need.

pub mod npm;
pub mod pihole;

pub use npm::{FakeNpm, NpmFlavor};
pub use pihole::FakePihole;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cubeos_kit::clock::civil;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Bodies above this are refused before a fake sees them; both real servers cap
/// payloads too (FTL at MAX_PAYLOAD_BYTES, Express's body-parser at 100 kB).
const MAX_BODY: usize = 1024 * 1024;

/// One request as a fake's handler sees it: the body already read.
pub(crate) struct HttpRequest {
    pub method: Method,
    /// The path exactly as sent, still percent-encoded.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpRequest {
    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a handler answers: a status, an optional JSON body, extra headers.
pub(crate) struct HttpReply {
    pub status: u16,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
}

impl HttpReply {
    pub fn json(status: u16, body: Value) -> HttpReply {
        HttpReply {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    pub fn empty(status: u16) -> HttpReply {
        HttpReply {
            status,
            body: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> HttpReply {
        self.headers.push((name, value));
        self
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // 204 and 304 must not carry a body (RFC 9110); both real servers obey that.
        let body = match self.body {
            Some(value) if status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED => {
                Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
            }
            _ => Bytes::new(),
        };
        let has_body = !body.is_empty();
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        if has_body {
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

/// What a test observes and steers on either fake: requests and sign-ins counted,
/// and an outage switch.
#[derive(Debug, Default)]
pub struct Meter {
    requests: AtomicUsize,
    logins: AtomicUsize,
    down: AtomicBool,
}

impl Meter {
    /// Successful sign-ins so far.
    pub fn logins(&self) -> usize {
        self.logins.load(Ordering::SeqCst)
    }

    /// While down, every request is answered 503 with a JSON error body.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// HTTP requests received so far, including those answered 503.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Counts a request; false while the fake is down.
    pub(crate) fn admit(&self) -> bool {
        self.requests.fetch_add(1, Ordering::SeqCst);
        !self.down.load(Ordering::SeqCst)
    }

    pub(crate) fn signed_in(&self) {
        self.logins.fetch_add(1, Ordering::SeqCst);
    }
}

type Handler = Arc<dyn Fn(HttpRequest) -> HttpReply + Send + Sync>;

/// A loopback HTTP server. Dropping it aborts the accept loop, and with it the
/// JoinSet holding every open connection, so a kept-alive client connection
/// cannot keep talking to a fake that a test has already dropped.
pub(crate) struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake server: cannot bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake server: no local address");
        let task = tokio::spawn(accept_loop(listener, handler));
        Server { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, handler: Handler) {
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connections so a long test does not accumulate them.
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let handler = handler.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(serve_one(&handler, request).await) }
            });
            // Errors here are a client hanging up mid-request: nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn serve_one(handler: &Handler, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return HttpReply::empty(413).into_response(),
    };
    let request = HttpRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    };
    handler(request).into_response()
}

/// Locks a fake's state. A handler never panics while holding the lock, but a
/// test thread might; the state is still consistent then, so poisoning is ignored.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Random bytes for session ids and tokens; nothing may be guessable or repeat.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    rand::random()
}

/// `now + d` that cannot overflow, whatever validity or TTL a test passes.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(1 << 32)))
        .unwrap_or(now)
}

/// `2025-02-04T20:40:46.340Z`: JavaScript's `Date.toISOString()`.
pub(crate) fn iso_millis(time: SystemTime) -> String {
    let c = civil(time);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

/// `2025-03-30 19:57:03`: SQLite's `datetime('now')`, which NPM stores on its
/// default (SQLite) database and returns unchanged.
pub(crate) fn sql_datetime(time: SystemTime) -> String {
    let c = civil(time);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn dates_format_like_javascript_and_sqlite() {
        let t = UNIX_EPOCH + Duration::from_millis(1_738_701_646_340);
        assert_eq!(iso_millis(t), "2025-02-04T20:40:46.340Z");
        assert_eq!(sql_datetime(t), "2025-02-04 20:40:46");
        assert_eq!(
            iso_millis(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
