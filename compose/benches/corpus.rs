//! Parse + translate the whole CasaOS corpus: total and per file.
//!
//! Run: `cargo bench -p cubeos-compose --bench corpus`; `cargo test` runs it
//! short.

use std::path::Path;
use std::time::{Duration, Instant};

use cubeos_compose::{Context, SystemVars, Vars, name_from_file, translate};
use cubeos_tests::bench;

fn main() {
    bench::announce("corpus");
    let rounds_wanted = bench::scaled(20, 3);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/casaos-appstore/apps");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("corpus at ../shared/casaos-appstore/apps")
        .map(|e| {
            let path = e.unwrap().path();
            (name_from_file(&path), std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    files.sort();
    let system = SystemVars {
        timezone: "UTC".into(),
        puid: 1000,
        pgid: 1000,
    };
    let contexts: Vec<Context> = files
        .iter()
        .map(|(name, _)| {
            Context::new(
                name,
                format!("/cubeos/apps/{name}/appdata").into(),
                "/cubeos/shared".into(),
                &system,
                &Vars::new(),
            )
        })
        .collect();
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();

    let mut per_file: Vec<Duration> = vec![Duration::ZERO; files.len()];
    let mut rounds = Vec::with_capacity(rounds_wanted);
    for _ in 0..rounds_wanted {
        let start = Instant::now();
        for (i, ((_, text), ctx)) in files.iter().zip(&contexts).enumerate() {
            let t = Instant::now();
            let translation = translate(text, ctx).expect("translates");
            std::hint::black_box(translation);
            per_file[i] += t.elapsed();
        }
        rounds.push(start.elapsed());
    }
    rounds.sort();
    let median = rounds[rounds_wanted / 2];
    let (slowest, slowest_time) = per_file
        .iter()
        .enumerate()
        .max_by_key(|(_, d)| **d)
        .map(|(i, d)| (&files[i].0, *d / rounds_wanted as u32))
        .unwrap();
    println!("corpus: {} files, {} KiB", files.len(), bytes / 1024);
    println!(
        "  whole corpus, parse + translate: median {:.2} ms over {rounds_wanted} rounds (min {:.2} ms)",
        median.as_secs_f64() * 1e3,
        rounds[0].as_secs_f64() * 1e3
    );
    println!(
        "  per file: mean {:.1} us; slowest {slowest} {:.1} us",
        median.as_secs_f64() * 1e6 / files.len() as f64,
        slowest_time.as_secs_f64() * 1e6
    );
    println!(
        "  throughput: {:.1} MiB/s",
        bytes as f64 / median.as_secs_f64() / (1024.0 * 1024.0)
    );
}
