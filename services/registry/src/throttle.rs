//! Failed sign-ins, counted per user and per address: after `max_failures` in a row
//! the key is locked out for `lockout`, and sign-ins for it are refused without
//! checking the password (so a flood costs no argon2 time). In memory on purpose: a
//! restart forgives, which a person locked out of their own box may need.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// More keys than this and the oldest unlocked ones are forgotten.
const MAX_KEYS: usize = 10_000;
/// Stands in for a lockout the clock cannot represent.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub struct Throttle {
    max_failures: u32,
    lockout: Duration,
    keys: Mutex<HashMap<String, Entry>>,
}

#[derive(Clone, Copy)]
struct Entry {
    failures: u32,
    locked_until: Option<Instant>,
}

impl Throttle {
    pub fn new(max_failures: u32, lockout: Duration) -> Throttle {
        Throttle {
            max_failures: max_failures.max(1),
            lockout,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while any of `keys` is locked out.
    pub fn check(&self, keys: &[String]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        for key in keys {
            if let Some(entry) = map.get_mut(key)
                && let Some(until) = entry.locked_until
            {
                if until > now {
                    wait = wait.max(until - now);
                } else {
                    *entry = Entry {
                        failures: 0,
                        locked_until: None,
                    };
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    pub fn failed(&self, keys: &[String]) {
        let now = Instant::now();
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, e| e.locked_until.is_some_and(|u| u > now));
        }
        for key in keys {
            let entry = map.entry(key.clone()).or_insert(Entry {
                failures: 0,
                locked_until: None,
            });
            entry.failures = entry.failures.saturating_add(1);
            if entry.failures >= self.max_failures {
                // A lockout too long for the clock (a config value) is as good as forever.
                entry.locked_until = now.checked_add(self.lockout).or(Some(now + FOREVER));
            }
        }
    }

    pub fn succeeded(&self, keys: &[String]) {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_forgives_after_lockout() {
        let t = Throttle::new(3, Duration::from_millis(50));
        let keys = vec!["user:ann".to_string(), "addr:10.0.0.9".to_string()];
        for _ in 0..2 {
            t.failed(&keys);
            assert!(t.check(&keys).is_ok());
        }
        t.failed(&keys);
        assert!(t.check(&keys).is_err());
        assert!(t.check(&["user:bob".to_string()]).is_ok());
        assert!(
            t.check(&["addr:10.0.0.9".to_string()]).is_err(),
            "the address is locked too"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.check(&keys).is_ok());
        t.failed(&keys);
        assert!(t.check(&keys).is_ok(), "the count restarts after a lockout");
    }

    #[test]
    fn a_lockout_longer_than_the_clock_locks_without_panicking() {
        let t = Throttle::new(1, Duration::MAX);
        let keys = vec!["user:ann".to_string()];
        t.failed(&keys);
        assert!(t.check(&keys).is_err());
    }
}
