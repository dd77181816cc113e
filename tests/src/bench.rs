//! What the benches share: a full run under `cargo bench`, a short one under
//! `cargo test`.
//!
//! Every bench target sets `test = true`, so `cargo test --workspace` (and CI) runs
//! it with few iterations: a bench that no longer starts fails the tests instead of
//! rotting until someone next measures. `cargo bench` passes `--bench`, which
//! selects the full run. Short runs print the same lines; their figures are
//! checks that the bench works, not measurements.

/// True unless `cargo bench` started this process.
pub fn short() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// `full` iterations under `cargo bench`; a hundredth of them (at least `floor`)
/// under `cargo test`.
pub fn scaled(full: usize, floor: usize) -> usize {
    if short() {
        (full / 100).max(floor).min(full)
    } else {
        full
    }
}

/// Says which mode this is, so a short run's figures are not taken for a
/// measurement.
pub fn announce(name: &str) {
    if short() {
        println!("{name}: short run (cargo test); `cargo bench` measures");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_run_keeps_a_floor_and_never_exceeds_the_full_count() {
        // The unit-test binary is started without `--bench`.
        assert!(short());
        assert_eq!(scaled(2000, 5), 20);
        assert_eq!(scaled(200, 5), 5);
        assert_eq!(scaled(3, 5), 3);
    }
}
