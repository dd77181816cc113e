//! Real dnsmasq and nginx on loopback ports, configured the way the proxy service
//! expects them on a box: dnsmasq reading the hosts file the service owns, nginx
//! including the directory of server blocks the service owns.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cubeos_kit::Config;
use cubeos_kit::config::{DnsBackendKind, ProxyBackendKind};

use crate::free_port;

/// Polls `ready` for up to 10 s.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dnsmasq answering on 127.0.0.1:`port` for the names in `hosts_file`; any other
/// name under `cubeos.cube` is NXDOMAIN (`--local`), and nothing is forwarded.
pub struct Dnsmasq {
    pub port: u16,
    pub hosts_file: PathBuf,
    pub pid_file: PathBuf,
    _process: Process,
}

impl Dnsmasq {
    pub fn start(dir: &Path) -> Dnsmasq {
        let port = free_port();
        let hosts_file = dir.join("dnsmasq.hosts");
        let pid_file = dir.join("dnsmasq.pid");
        std::fs::write(&hosts_file, "").unwrap();
        // A killed dnsmasq leaves its pid file: wait for the new one's.
        let _ = std::fs::remove_file(&pid_file);
        let child = Command::new("dnsmasq")
            .arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg(format!("--port={port}"))
            .args([
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
            ])
            .arg("--local=/cubeos.cube/")
            .arg(format!("--addn-hosts={}", hosts_file.display()))
            .arg(format!("--pid-file={}", pid_file.display()))
            .arg("--user=root")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts");
        wait_until("dnsmasq to write its pid file", || pid_file.exists());
        Dnsmasq {
            port,
            hosts_file,
            pid_file,
            _process: Process(child),
        }
    }

    /// Points the proxy service at this dnsmasq.
    pub fn configure(&self, config: &mut Config) {
        config.proxy.dns = DnsBackendKind::Dnsmasq;
        config.proxy.dnsmasq.hosts_file = self.hosts_file.clone();
        config.proxy.dnsmasq.pid_file = self.pid_file.clone();
    }

    /// `dig` for `name`: (status, answers).
    pub fn dig(&self, name: &str) -> (String, Vec<String>) {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                name,
                "A",
                "+time=2",
                "+tries=1",
            ])
            .output()
            .expect("dig");
        let text = String::from_utf8_lossy(&out.stdout);
        let status = text
            .split("status: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap_or("NO ANSWER")
            .to_owned();
        // Answer lines: `name. TTL IN A address`; comments start with ';'.
        let answers = text
            .lines()
            .filter(|l| !l.starts_with(';'))
            .filter_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                (fields.len() == 5 && fields[3] == "A").then(|| fields[4].to_owned())
            })
            .collect();
        (status, answers)
    }
}

/// nginx on 127.0.0.1:`port`, with a default server answering 404 and the service's
/// directory included.
pub struct Nginx {
    pub port: u16,
    pub prefix: PathBuf,
    pub conf_dir: PathBuf,
    conf: PathBuf,
    _process: Process,
}

impl Nginx {
    pub fn start(dir: &Path) -> Nginx {
        let port = free_port();
        let prefix = dir.join("nginx");
        let conf_dir = prefix.join("cubeos.d");
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        std::fs::create_dir_all(&conf_dir).unwrap();
        let conf = prefix.join("nginx.conf");
        let p = prefix.display();
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nuser root;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {p}/body;\n    proxy_temp_path {p}/proxy;\n    fastcgi_temp_path {p}/fastcgi;\n    uwsgi_temp_path {p}/uwsgi;\n    scgi_temp_path {p}/scgi;\n    server {{\n        listen 127.0.0.1:{port} default_server;\n        return 404;\n    }}\n    include {}/*.conf;\n}}\n",
                conf_dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .args(["-c", &conf.display().to_string(), "-p", &p.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        wait_until("nginx to listen", || {
            std::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok()
        });
        Nginx {
            port,
            prefix,
            conf_dir,
            conf,
            _process: Process(child),
        }
    }

    /// Points the proxy service at this nginx.
    pub fn configure(&self, config: &mut Config) {
        let (c, p) = (self.conf.display().to_string(), self.prefix.display().to_string());
        config.proxy.proxy = ProxyBackendKind::Nginx;
        config.proxy.nginx.conf_dir = self.conf_dir.clone();
        config.proxy.nginx.listen = format!("127.0.0.1:{}", self.port);
        config.proxy.nginx.test_command = ["nginx", "-t", "-q", "-c", &c, "-p", &p].map(String::from).to_vec();
        config.proxy.nginx.reload_command = ["nginx", "-s", "reload", "-c", &c, "-p", &p].map(String::from).to_vec();
    }

    /// `curl -H 'Host: <name>'` through nginx: (status, body).
    pub fn get(&self, name: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-m", "3", "-w", "\n%{http_code}", "-H", &format!("Host: {name}")])
            .arg(format!("http://127.0.0.1:{}/", self.port))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }
}

/// An app stand-in on a loopback port: answers every request with `body`, and a
/// WebSocket upgrade with `101` followed by echoing whatever it receives.
pub struct Backend {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub async fn start(body: &str) -> Backend {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = body.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    if head.contains("upgrade: websocket") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                            .await;
                        while let Ok(n) = stream.read(&mut buf).await {
                            if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        Backend { port, task }
    }
}

/// Opens a WebSocket-style upgrade to `name` through nginx on `port`, sends `probe`
/// once switched, and returns what came back (empty when the upgrade failed).
pub async fn upgrade_through(port: u16, name: &str, probe: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return Vec::new();
    };
    let request = format!(
        "GET /socket HTTP/1.1\r\nHost: {name}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return Vec::new();
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => return Vec::new(),
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Vec::new();
    }
    let _ = stream.write_all(probe).await;
    let mut echoed = Vec::new();
    while echoed.len() < probe.len() {
        match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => echoed.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    echoed
}

/// A real image registry (the distribution project's, Debian's `docker-registry`)
/// on 127.0.0.1:`port`, storing under a directory of the test's, as a box's local
/// registry would: Docker pushes to and pulls from a loopback registry without TLS.
pub struct ImageRegistry {
    pub port: u16,
    _process: Process,
}

impl ImageRegistry {
    pub fn start(dir: &Path) -> ImageRegistry {
        let port = free_port();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("registry").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        wait_until("the registry to listen", || {
            std::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok()
        });
        ImageRegistry {
            port,
            _process: Process(child),
        }
    }

    /// `127.0.0.1:<port>`, as `orchestrator.local_registry` names it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
