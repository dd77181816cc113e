//! What the tests of the `cubeos` binary share: the binary started the way a user
//! would start it, children that die with a failing test, and reading their logs.
// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The binary under test: the one this `cargo test` built, or `CUBEOS_TEST_BINARY`
/// (a release build, to measure what users run).
pub fn bin() -> PathBuf {
    std::env::var_os("CUBEOS_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cubeos")))
}

/// `cubeos` with its ports and data dir set the way a user would set them.
/// `cubeos` with the loopback broker on `mqtt` and the gate on `gate` (its
/// WebSocket listener on any free port).
pub fn cubeos(data: &Path, mqtt: u16, gate: u16) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--data")
        .arg(data)
        .env("CUBEOS__BROKER__TCP_LISTEN", format!("127.0.0.1:{mqtt}"))
        .env("CUBEOS__BROKER__ADDRESS", format!("127.0.0.1:{mqtt}"))
        .env("CUBEOS__GATE__TCP_LISTEN", format!("127.0.0.1:{gate}"))
        .env("CUBEOS__GATE__ADDRESS", format!("127.0.0.1:{gate}"))
        .env("CUBEOS__GATE__WS_LISTEN", "127.0.0.1:0")
        .env("CUBEOS__DASHBOARD__LISTEN", "127.0.0.1:0")
        .env("CUBEOS__LOG__LEVEL", "info");
    cmd
}

/// A user port range of this test's own, as `CUBEOS__PORTS__USER`: below the
/// ephemeral ports `free_port` hands out (and the orchestrator tests' ranges),
/// so an app's published port is never a port another test picked for a listener.
pub fn own_range() -> String {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let slot = (std::process::id() % 40) as u16 * 4 + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4;
    let base = 12000 + slot * 40;
    format!("{base}-{}", base + 30)
}

/// A child process that is killed if the test fails before it ends.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("cubeos runs")
}

/// Reads stderr until `count` lines match `needle`, returning every line read.
pub fn wait_for_lines(child: &mut Child, needle: &str, count: usize) -> Vec<String> {
    let logs = Logs::of(child);
    logs.wait_for(needle, count);
    logs.lines()
}

/// A child's stderr, every line kept as it arrives.
#[derive(Clone)]
pub struct Logs(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Logs {
    /// Takes the child's piped stderr and reads it on a thread of its own, for as
    /// long as the child writes: a closed pipe would make its log writes fail.
    pub fn of(child: &mut Child) -> Logs {
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Logs(Arc::default());
        let shared = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let (lines, arrived) = &*shared.0;
                lines.lock().unwrap().push(line);
                arrived.notify_all();
            }
        });
        logs
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    /// Lines containing `needle` so far.
    pub fn count(&self, needle: &str) -> usize {
        self.0.0.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits (30 s at most) until `count` lines contain `needle`.
    pub fn wait_for(&self, needle: &str, count: usize) {
        let (lines, arrived) = &*self.0;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = lines.lock().unwrap();
        while seen.iter().filter(|l| l.contains(needle)).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {count}x '{needle}' in:\n{}", seen.join("\n"));
            seen = arrived.wait_timeout(seen, left).unwrap().0;
        }
    }
}

/// `cubeos up` in a data dir of its own, on free ports, with `env` set.
pub struct Up {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub mqtt: u16,
    pub gate: u16,
    pub process: Guard,
    pub logs: Logs,
    env: Vec<(String, String)>,
}

impl Up {
    /// Starts it and waits until every service is ready.
    pub fn start(env: &[(&str, &str)]) -> Up {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (mqtt, gate) = (cubeos_tests::free_port(), cubeos_tests::free_port());
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (process, logs) = Self::spawn(&data, mqtt, gate, &env);
        Up {
            dir,
            data,
            mqtt,
            gate,
            process,
            logs,
            env,
        }
    }

    fn spawn(data: &Path, mqtt: u16, gate: u16, env: &[(String, String)]) -> (Guard, Logs) {
        let mut cmd = cubeos(data, mqtt, gate);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let mut process = Guard(cmd.arg("up").stderr(Stdio::piped()).spawn().expect("up starts"));
        let logs = Logs::of(&mut process.0);
        logs.wait_for("service ready", 4);
        (process, logs)
    }

    /// Starts it again on the same data and ports (after it stopped or was killed).
    pub fn restart(&mut self) {
        let (process, logs) = Self::spawn(&self.data, self.mqtt, self.gate, &self.env);
        self.process = process;
        self.logs = logs;
    }

    /// A client command against it, as the system (it can read the credentials).
    pub fn cli(&self) -> Command {
        let mut cmd = cubeos(&self.data, self.mqtt, self.gate);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The resident memory of the `up` process.
    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id())).unwrap();
        let field = |name: &str| -> u64 {
            let kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in /proc/<pid>/status"));
            kib * 1024
        };
        Memory {
            rss: field("VmRSS:"),
            anon: field("RssAnon:"),
        }
    }
}

/// A process's resident memory, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// All of it (`VmRSS`), the binary's own code pages included.
    pub rss: u64,
    /// What the process allocated itself (`RssAnon`): heap, arenas, mappings.
    pub anon: u64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        write!(f, "RSS {:.1} MB ({:.1} MB anonymous)", mb(self.rss), mb(self.anon))
    }
}

pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

pub fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "cubeos did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
