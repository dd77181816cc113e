//! Allocation with 800 of the 900 user ports in use: our allocator (bus ->
//! candidates from store + host sockets -> registry reserve) against the seed's
//! `MAX(port)+1` query on the same database in the same run; and the seed's
//! failure case (the top port taken, free ports below) next to ours.
//!
//! Run: `cargo bench -p cubeos-port-allocator --bench allocate`; `cargo test`
//! runs it short.

use std::time::{Duration, Instant};

use cubeos_tests::{System, bench};
use serde_json::json;
use sqlx::ConnectOptions;

const SEED_QUERY: &str = "SELECT COALESCE(MAX(port), 6099) FROM port_allocations WHERE port >= 6100 AND port <= 6999";

fn pct(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    bench::announce("allocate");
    let rounds = bench::scaled(200, 10);
    let mut system = System::start_with(|c| c.docker.socket = "/nonexistent/docker.sock".into()).await;
    system.start_service("port-allocator").await;
    let bus = system.client("bench").await;
    bus.request("registry", "app.create", &json!({ "name": "filler" }))
        .await
        .unwrap();
    bus.request("registry", "app.create", &json!({ "name": "bench" }))
        .await
        .unwrap();
    // 800 of 900 in use, the top one included: every ninth port from 6100 stays free.
    let mut used = 0;
    for port in (6100..=6999).rev() {
        if used < 800 && (port == 6999 || (port - 6100) % 9 != 0) {
            bus.request("registry", "port.reserve", &json!({ "app": "filler", "port": port }))
                .await
                .unwrap();
            used += 1;
        }
    }
    assert_eq!(used, 800);

    // Let the allocator see the 800 reservations (retained app states).
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Ours: allocate, then release so that 800 stay in use.
    let mut ours = Vec::with_capacity(rounds);
    let start = Instant::now();
    let mut first = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let reply = bus
            .request("port-allocator", "allocate", &json!({ "app": "bench" }))
            .await
            .unwrap();
        ours.push(t.elapsed());
        let port = reply["ports"][0].as_u64().unwrap();
        first = port;
        bus.request("registry", "port.release", &json!({ "app": "bench", "port": port }))
            .await
            .unwrap();
    }
    let ours_wall = start.elapsed();

    // The seed's query on the same database.
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(system.database_path())
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let mut seed = Vec::with_capacity(rounds);
    let mut seed_answer = 0;
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        let max: i64 = sqlx::query_scalar(SEED_QUERY).fetch_one(&mut conn).await.unwrap();
        seed.push(t.elapsed());
        seed_answer = max + 1;
    }
    let seed_wall = start.elapsed();

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (o50, o99, s50, s99) = (
        pct(&mut ours, 0.5),
        pct(&mut ours, 0.99),
        pct(&mut seed, 0.5),
        pct(&mut seed, 0.99),
    );
    println!("allocation with 800 of 900 user ports in use ({rounds} rounds)");
    println!(
        "  ours (bus round trip, store + host sockets, registry commit): p50 {:.3} ms  p99 {:.3} ms  {:.0} allocations/s",
        ms(o50),
        ms(o99),
        rounds as f64 / ours_wall.as_secs_f64()
    );
    println!(
        "  seed MAX(port)+1 query alone (no reservation, no commit):     p50 {:.3} ms  p99 {:.3} ms  {:.0} queries/s",
        ms(s50),
        ms(s99),
        rounds as f64 / seed_wall.as_secs_f64()
    );
    println!(
        "  ratio ours/seed: p50 x{:.1}  p99 x{:.1}",
        o50.as_secs_f64() / s50.as_secs_f64(),
        o99.as_secs_f64() / s99.as_secs_f64()
    );
    println!("failure case: port 6999 taken, 100 free ports below it");
    println!(
        "  seed: MAX+1 = {seed_answer} -> {}",
        if seed_answer > 6999 {
            "\"no available ports in user range\" (wrong: 100 are free)"
        } else {
            "ok"
        }
    );
    println!("  ours: allocated {first} (the lowest free port)");
}
