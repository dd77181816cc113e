//! The least of HTTP/1.1 a browser needs from the dashboard: one parsed request
//! head and one response, closed after it is sent.

/// Headers kept from a request; a browser sends about a dozen.
const MAX_HEADERS: usize = 48;

/// A request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target, query included.
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Parses a complete head; `None` when it is not HTTP/1.x.
    pub fn parse(bytes: &[u8]) -> Option<Head> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(bytes) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return None,
        }
        Some(Head {
            method: request.method?.to_owned(),
            target: request.path?.to_owned(),
            headers: request
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
        })
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (lowercase), comma lists split.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = String> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|v| v.trim().to_ascii_lowercase())
    }

    /// `Connection: Upgrade` with `Upgrade: websocket` (RFC 6455 section 4.1).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.values("connection").any(|v| v == "upgrade") && self.values("upgrade").any(|v| v == "websocket")
    }

    /// No `Origin`, as from a program, or one naming the request's `Host`: a page
    /// of this box. Ports are not compared: the reverse proxy passes the name on
    /// without the port the browser used.
    pub fn same_origin(&self) -> bool {
        let Some(origin) = self.header("origin") else {
            return true;
        };
        let origin = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        self.header("host")
            .is_some_and(|host| host_name(host).eq_ignore_ascii_case(host_name(origin)))
    }

    /// The browser takes gzip (and has not refused it with `q=0`).
    pub fn accepts_gzip(&self) -> bool {
        self.values("accept-encoding").any(|v| {
            let mut parts = v.split(';').map(str::trim);
            parts.next() == Some("gzip") && !parts.any(|p| p == "q=0" || p == "q=0.0")
        })
    }
}

/// `name` of `name:port` (or `[v6]:port`).
fn host_name(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => authority,
    }
}

/// True once `bytes` hold a whole request head.
pub fn head_complete(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == b"\r\n\r\n")
}

/// A response, closed after it is sent.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: bytes::Bytes,
    /// `HEAD`: the headers of the body without it.
    head_only: bool,
}

impl Response {
    /// A body of `content_type`.
    pub fn ok(content_type: &str, body: bytes::Bytes) -> Response {
        Response {
            status: 200,
            headers: vec![("Content-Type", content_type.to_owned())],
            body,
            head_only: false,
        }
    }

    /// A short plain-text answer such as a 404.
    pub fn status(status: u16, text: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: bytes::Bytes::from(format!("{text}\n")),
            head_only: false,
        }
    }

    /// A 304: the browser's copy is current.
    pub fn not_modified() -> Response {
        Response {
            status: 304,
            headers: Vec::new(),
            body: bytes::Bytes::new(),
            head_only: false,
        }
    }

    /// Adds an `ETag` from the body as sent, so a browser's copy can be revalidated.
    pub fn tagged(self) -> Response {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&self.body[..], &mut hasher);
        let tag = format!("\"{:016x}\"", std::hash::Hasher::finish(&hasher));
        self.header("ETag", tag)
    }

    /// The `ETag` it carries.
    pub fn etag(&self) -> Option<&str> {
        self.headers.iter().find(|(n, _)| *n == "ETag").map(|(_, v)| v.as_str())
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The answer to `HEAD`: the headers only.
    pub fn without_body(mut self) -> Response {
        self.head_only = true;
        self
    }

    /// The bytes on the wire, with the headers every response carries: the page
    /// may load only its own files and talk only to its own origin. MQTT.js runs
    /// its keepalive timer in a worker it makes from a blob, so that a tab in the
    /// background keeps its connection.
    pub fn into_bytes(self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        let fixed = [
            ("Content-Length", self.body.len().to_string()),
            ("Connection", "close".into()),
            ("X-Content-Type-Options", "nosniff".into()),
            ("X-Frame-Options", "DENY".into()),
            ("Referrer-Policy", "no-referrer".into()),
            (
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; connect-src 'self'; style-src 'self'; \
                 worker-src blob:; \
                 frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
                    .into(),
            ),
        ];
        for (name, value) in fixed
            .iter()
            .map(|(n, v)| (*n, v))
            .chain(self.headers.iter().map(|(n, v)| (*n, v)))
        {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !self.head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        Head::parse(text.as_bytes()).expect("parses")
    }

    #[test]
    fn a_browser_upgrade_is_recognised() {
        let h = head(
            "GET /mqtt HTTP/1.1\r\nHost: cubeos.cube\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Protocol: mqtt\r\n\r\n",
        );
        assert_eq!(h.path(), "/mqtt");
        assert!(h.is_websocket_upgrade());
        let plain = head("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!plain.is_websocket_upgrade());
    }

    #[test]
    fn only_the_boxs_own_pages_may_upgrade() {
        let with = |origin: &str| {
            head(&format!(
                "GET /mqtt HTTP/1.1\r\nHost: cubeos.cube\r\nOrigin: {origin}\r\n\r\n"
            ))
        };
        assert!(with("http://cubeos.cube").same_origin());
        assert!(
            with("http://cubeos.cube:8080").same_origin(),
            "the proxy drops the port"
        );
        assert!(!with("http://evil.example").same_origin());
        assert!(!with("http://cubeos.cube.evil.example").same_origin());
        assert!(head("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n").same_origin());
    }

    #[test]
    fn the_query_is_not_part_of_the_path() {
        assert_eq!(head("GET /app.js?v=1 HTTP/1.1\r\n\r\n").path(), "/app.js");
    }

    #[test]
    fn gzip_is_taken_unless_refused() {
        assert!(head("GET / HTTP/1.1\r\nAccept-Encoding: gzip, deflate, br\r\n\r\n").accepts_gzip());
        assert!(!head("GET / HTTP/1.1\r\nAccept-Encoding: br, gzip;q=0\r\n\r\n").accepts_gzip());
        assert!(!head("GET / HTTP/1.1\r\n\r\n").accepts_gzip());
    }

    #[test]
    fn garbage_and_partial_heads_are_not_requests() {
        assert!(Head::parse(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").is_none());
        assert!(Head::parse(b"GET / HTTP/1.1\r\nHost: x\r\n").is_none());
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: x\r\n"));
        assert!(head_complete(b"GET / HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn the_etag_follows_the_body() {
        let tag = |body: &'static [u8]| Response::ok("text/plain", bytes::Bytes::from_static(body)).tagged();
        assert_eq!(tag(b"one").etag(), tag(b"one").etag());
        assert_ne!(tag(b"one").etag(), tag(b"two").etag());
        assert!(Response::status(404, "x").etag().is_none());
    }

    #[test]
    fn a_head_response_has_the_length_but_no_body() {
        let r = Response::ok("text/plain", bytes::Bytes::from_static(b"hello")).without_body();
        let text = String::from_utf8(r.into_bytes()).unwrap();
        assert!(text.contains("Content-Length: 5\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }
}
