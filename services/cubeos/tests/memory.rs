//! Memory of `cubeos up` under client churn: what a cron job calling the CLI, or a
//! script on the box, costs the broker over months.
//!
//! RSS is read from `/proc`; the bound is generous against noise (a leak of the
//! old kind, a reply log per call, was 28 KiB a call: 55 MB over 2,000 calls).

use std::time::Duration;

mod support;

use support::{Up, run};

/// Calls fill the broker's fixed-size logs first (each message from a short-lived
/// connection pins its 10 KiB read buffer until its log drops it: see
/// `broker/src/logs.rs`); growth is measured after that.
const WARM_UP: usize = 300;
const CALLS: usize = 2000;
const MAX_GROWTH: u64 = 2 * 1024 * 1024;

#[test]
fn two_thousand_cli_calls_leave_the_broker_no_bigger() {
    let up = Up::start(&[]);
    let call = || {
        let out = run(up.cli().args(["state", "get", "domain"]));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    for _ in 0..WARM_UP {
        call();
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = up.memory();
    // Two at a time, as a cron job and a person at the shell would overlap.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..CALLS / 2 {
                    call();
                }
            });
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let after = up.memory();
    let grown = after.rss.saturating_sub(before.rss);
    println!(
        "after {WARM_UP} calls: {before}; after {CALLS} more: {after} (+{} KiB)",
        grown / 1024
    );
    assert!(
        grown <= MAX_GROWTH,
        "{CALLS} CLI calls grew cubeos up by {} KiB: {before} -> {after}",
        grown / 1024
    );
    // An ordinary disconnect is no error and no warning.
    let noisy: Vec<String> = up
        .logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    assert!(
        noisy.is_empty(),
        "ERROR/WARN lines for ordinary CLI calls:\n{}",
        noisy.join("\n")
    );
}
