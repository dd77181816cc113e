//! Foundation benchmark: the command round trip (client -> broker -> registry ->
//! SQLite commit -> reply) of a real `cubeos up` process, against the same INSERT
//! done directly on SQLite with the same settings in the same run; and the RSS of
//! `cubeos up` idle and after 10,000 commands.
//!
//! The typed layer is measured in the same run: the same `app.get` sent as raw
//! JSON (`Bus::request`) and as a contract type (`Bus::call`), interleaved.
//!
//! Run: `cargo bench -p cubeos --bench foundation` (release build); `cargo test`
//! runs it short.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cubeos_contract::api::registry::{AppCreate, AppGet};
use cubeos_kit::config::StoreConfig;
use cubeos_kit::{Bus, BusOptions, Config};
use cubeos_tests::{bench, free_port};
use serde_json::json;
use sqlx::ConnectOptions;

const IN_FLIGHT: usize = 16;

/// How many commands each part sends: sequential creates, concurrent creates, and
/// in all (the rest are reads, half raw and half typed).
struct Counts {
    sequential: usize,
    concurrent: usize,
    total: usize,
}

impl Counts {
    fn new() -> Counts {
        Counts {
            sequential: bench::scaled(2000, 20),
            concurrent: bench::scaled(2000, IN_FLIGHT * 2),
            total: bench::scaled(10_000, 100),
        }
    }
}

/// A create of app `name`, typed.
fn create(name: String) -> AppCreate {
    AppCreate {
        name,
        ..AppCreate::default()
    }
}

struct Stats {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

fn stats(mut samples: Vec<Duration>, wall: Duration) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        per_sec: samples.len() as f64 / wall.as_secs_f64(),
    }
}

const INSERT: &str = "INSERT INTO apps (name, display_name, description, type, category, source, store_id,
    compose_path, data_path, enabled, tor_enabled, vpn_enabled, icon_url, version, homepage)
    VALUES (?, ?, '', 'user', 'other', 'custom', NULL, ?, ?, 1, 0, 0, '', '', '') RETURNING id";

/// The same INSERT on the same kind of database (WAL, foreign keys, synchronous
/// FULL, migrated schema), one transaction per row as the registry commits.
async fn baseline(dir: &Path, rows: usize) -> Stats {
    let path = dir.join("baseline.db");
    let options = cubeos_registry::store::connect_options(&path, &StoreConfig::default())
        .unwrap()
        .create_if_missing(true);
    let mut conn = options.connect().await.unwrap();
    cubeos_registry::store::MIGRATOR.run(&mut conn).await.unwrap();
    let mut samples = Vec::with_capacity(rows);
    let start = Instant::now();
    for i in 0..rows {
        let t = Instant::now();
        let name = format!("base-{i}");
        let mut tx = sqlx::Connection::begin(&mut conn).await.unwrap();
        let _id: i64 = sqlx::query_scalar(INSERT)
            .bind(&name)
            .bind(&name)
            .bind("/x/docker-compose.yml")
            .bind("/x/appdata")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        samples.push(t.elapsed());
    }
    stats(samples, start.elapsed())
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    bench::announce("foundation");
    let n = Counts::new();
    let dir = tempfile::tempdir().unwrap();
    let base = baseline(dir.path(), n.sequential).await;

    let data = dir.path().join("data");
    let (mqtt, gate) = (free_port(), free_port());
    let up = Up(Command::new(env!("CARGO_BIN_EXE_cubeos"))
        .arg("--data")
        .arg(&data)
        .arg("up")
        .env("CUBEOS__BROKER__TCP_LISTEN", format!("127.0.0.1:{mqtt}"))
        .env("CUBEOS__BROKER__ADDRESS", format!("127.0.0.1:{mqtt}"))
        .env("CUBEOS__GATE__TCP_LISTEN", format!("127.0.0.1:{gate}"))
        .env("CUBEOS__GATE__ADDRESS", format!("127.0.0.1:{gate}"))
        .env("CUBEOS__GATE__WS_LISTEN", "127.0.0.1:0")
        .env("CUBEOS__DASHBOARD__LISTEN", "127.0.0.1:0")
        .env("CUBEOS__ORCHESTRATOR__DEPLOY_CORE_APPS", "false")
        .env("CUBEOS__LOG__LEVEL", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("cubeos up"));
    let credentials_path = data.join("broker-credentials.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    let credentials = loop {
        if let Ok(c) = cubeos_broker::Credentials::load(&credentials_path) {
            break c;
        }
        assert!(Instant::now() < deadline, "cubeos up did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut config = Config::default();
    config.broker.address = format!("127.0.0.1:{mqtt}").parse().unwrap();
    let mut up = up;
    let bus = loop {
        if let Ok(Some(status)) = up.0.try_wait() {
            panic!("cubeos up exited: {status}");
        }
        if let Ok(bus) = Bus::connect(BusOptions::new(
            &config,
            "bench",
            &credentials.username,
            &credentials.password,
        ))
        .await
            && bus.request("registry", "state.get", &json!({})).await.is_ok()
        {
            break bus;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(up.0.id());

    // Sequential round trips.
    let mut samples = Vec::with_capacity(n.sequential);
    let start = Instant::now();
    for i in 0..n.sequential {
        let t = Instant::now();
        bus.call(&create(format!("seq-{i}"))).await.unwrap();
        samples.push(t.elapsed());
    }
    let seq = stats(samples, start.elapsed());

    // Writes/s with several commands in flight.
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..IN_FLIGHT {
        let bus = bus.clone();
        let concurrent = n.concurrent;
        tasks.spawn(async move {
            let mut samples = Vec::new();
            for i in (w..concurrent).step_by(IN_FLIGHT) {
                let t = Instant::now();
                bus.call(&create(format!("par-{i}"))).await.unwrap();
                samples.push(t.elapsed());
            }
            samples
        });
    }
    let mut samples = Vec::new();
    while let Some(s) = tasks.join_next().await {
        samples.extend(s.unwrap());
    }
    let par = stats(samples, start.elapsed());

    // The rest of the commands: reads of single apps, alternately as raw JSON and
    // typed, so both see the same broker, store and machine.
    let reads = n.total - n.sequential - n.concurrent;
    let (mut raw, mut typed) = (Vec::with_capacity(reads / 2), Vec::with_capacity(reads / 2));
    let (mut raw_wall, mut typed_wall) = (Duration::ZERO, Duration::ZERO);
    for i in 0..reads {
        let name = format!("seq-{}", i % n.sequential);
        let t = Instant::now();
        if i % 2 == 0 {
            let reply = bus
                .request("registry", "app.get", &json!({ "name": name }))
                .await
                .unwrap();
            std::hint::black_box(serde_json::from_value::<cubeos_contract::models::AppRecord>(reply).unwrap());
            raw.push(t.elapsed());
            raw_wall += t.elapsed();
        } else {
            std::hint::black_box(bus.call(&AppGet { name }).await.unwrap());
            typed.push(t.elapsed());
            typed_wall += t.elapsed();
        }
    }
    let (raw, typed) = (stats(raw, raw_wall), stats(typed, typed_wall));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy_rss = rss_kib(up.0.id());

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("command round trip (app.create: client -> broker -> registry -> SQLite commit -> reply)");
    println!(
        "  baseline, direct SQLite INSERT+commit : p50 {:.3} ms  p99 {:.3} ms  {:.0} writes/s",
        ms(base.p50),
        ms(base.p99),
        base.per_sec
    );
    println!(
        "  over the bus, sequential             : p50 {:.3} ms  p99 {:.3} ms  {:.0} writes/s",
        ms(seq.p50),
        ms(seq.p99),
        seq.per_sec
    );
    println!(
        "  over the bus, {IN_FLIGHT} in flight           : p50 {:.3} ms  p99 {:.3} ms  {:.0} writes/s",
        ms(par.p50),
        ms(par.p99),
        par.per_sec
    );
    println!(
        "  ratio bus/baseline (sequential)      : p50 x{:.2}  p99 x{:.2}  writes/s x{:.2}",
        seq.p50.as_secs_f64() / base.p50.as_secs_f64(),
        seq.p99.as_secs_f64() / base.p99.as_secs_f64(),
        seq.per_sec / base.per_sec
    );
    println!(
        "  ratio bus/baseline ({IN_FLIGHT} in flight)      : writes/s x{:.2}",
        par.per_sec / base.per_sec
    );
    println!("typed layer (app.get, raw JSON request vs contract type, interleaved)");
    println!(
        "  raw request + parse                  : p50 {:.3} ms  p99 {:.3} ms",
        ms(raw.p50),
        ms(raw.p99)
    );
    println!(
        "  typed call                           : p50 {:.3} ms  p99 {:.3} ms",
        ms(typed.p50),
        ms(typed.p99)
    );
    println!(
        "  ratio typed/raw                      : p50 x{:.2}  p99 x{:.2}",
        typed.p50.as_secs_f64() / raw.p50.as_secs_f64(),
        typed.p99.as_secs_f64() / raw.p99.as_secs_f64()
    );
    println!(
        "RSS of cubeos up: idle {} KiB, after {} commands {} KiB",
        idle_rss, n.total, busy_rss
    );
}
