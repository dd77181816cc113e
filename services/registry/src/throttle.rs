//! Failed sign-ins, counted per user and per address: after `max_failures` the key
//! is locked out for `lockout`, and sign-ins for it are refused without checking
//! the password (so a flood costs no argon2 time). In memory on purpose: a restart
//! forgives, which a person locked out of their own box may need.
//!
//! The budget is taken before a password is checked, under one lock: an attempt is
//! let in only while the key's failures plus the attempts still being checked are
//! below `max_failures`, so parallel attempts cannot all pass before the first
//! failure is counted, and no burst gets more than `max_failures` tries. An attempt
//! beyond the budget that only checks in flight are holding waits for one of them
//! to finish instead of being refused: if they fail, the lockout refuses it; if one
//! succeeds, the count starts afresh and it goes on. Six honest logins in parallel
//! all succeed; thirty-two wrong ones get five checks. At most
//! [`WAITERS_PER_FAILURE`] x `max_failures` attempts wait per key; more are refused
//! at once ([`Refused::Busy`]), so a flood cannot park hundreds of commands in the
//! registry, where token sign-ins would queue behind them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// More keys than this and the oldest idle ones are forgotten.
const MAX_KEYS: usize = 10_000;
/// Attempts that may wait per key, per failure allowed: room for a burst of honest
/// parallel logins, a bound for a flood.
pub const WAITERS_PER_FAILURE: u32 = 4;
/// Stands in for a lockout the clock cannot represent.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub struct Throttle {
    max_failures: u32,
    lockout: Duration,
    keys: Mutex<HashMap<String, Entry>>,
    /// Woken whenever an attempt finishes.
    finished: Notify,
}

#[derive(Clone, Copy, Default)]
struct Entry {
    /// Failures since the last success or lockout.
    failures: u32,
    /// Attempts let in and still being checked.
    in_flight: u32,
    /// Attempts waiting for those to finish.
    waiting: u32,
    locked_until: Option<Instant>,
}

impl Entry {
    fn idle(&self, now: Instant) -> bool {
        self.in_flight == 0 && self.waiting == 0 && self.locked_until.is_none_or(|u| u <= now)
    }
}

/// An attempt let in. Dropped without [`Attempt::succeeded`], it counts as a
/// failure (a wrong secret, or a check that could not be made).
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    keys: Vec<String>,
    succeeded: bool,
}

impl Attempt<'_> {
    /// The attempt proved the secret: its keys start afresh.
    pub fn succeeded(mut self) {
        self.succeeded = true;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.throttle.finish(&self.keys, self.succeeded);
    }
}

/// Why an attempt was not let in.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// A key is locked out for this long.
    Locked(Duration),
    /// As many attempts as the budget already wait for checks in flight.
    Busy,
}

/// What an attempt's keys allow right now.
enum Verdict {
    LetIn,
    Refused(Refused),
    /// The budget is held by checks in flight: counted among the waiting.
    Wait,
}

/// An attempt counted among the waiting; uncounted when dropped.
struct Waiting<'a> {
    throttle: &'a Throttle,
    keys: &'a [String],
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut map = self.throttle.keys.lock().unwrap_or_else(|p| p.into_inner());
        for key in self.keys {
            if let Some(entry) = map.get_mut(key) {
                entry.waiting = entry.waiting.saturating_sub(1);
            }
        }
    }
}

impl Throttle {
    pub fn new(max_failures: u32, lockout: Duration) -> Throttle {
        Throttle {
            max_failures: max_failures.max(1),
            lockout,
            keys: Mutex::new(HashMap::new()),
            finished: Notify::new(),
        }
    }

    /// Lets one sign-in attempt for `keys` in, or says why not: a key is locked
    /// out, or too many attempts already wait. Waits while the keys' budget is
    /// held by attempts in flight.
    pub async fn attempt(&self, keys: &[String]) -> Result<Attempt<'_>, Refused> {
        loop {
            // Registered before looking, so a finish in between is not missed.
            let finished = self.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            match self.judge(keys) {
                Verdict::LetIn => {
                    return Ok(Attempt {
                        throttle: self,
                        keys: keys.to_vec(),
                        succeeded: false,
                    });
                }
                Verdict::Refused(why) => return Err(why),
                Verdict::Wait => {
                    let _waiting = Waiting { throttle: self, keys };
                    finished.await;
                }
            }
        }
    }

    fn judge(&self, keys: &[String]) -> Verdict {
        let now = Instant::now();
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let locked = keys
            .iter()
            .filter_map(|k| map.get(k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        if let Some(wait) = locked {
            return Verdict::Refused(Refused::Locked(wait));
        }
        let full = keys.iter().filter_map(|k| map.get(k)).any(|e| {
            let failures = if e.locked_until.is_some() { 0 } else { e.failures };
            failures + e.in_flight >= self.max_failures
        });
        if full {
            if keys
                .iter()
                .filter_map(|k| map.get(k))
                .any(|e| e.waiting >= self.max_failures.saturating_mul(WAITERS_PER_FAILURE))
            {
                return Verdict::Refused(Refused::Busy);
            }
            for key in keys {
                map.entry(key.clone()).or_default().waiting += 1;
            }
            return Verdict::Wait;
        }
        if map.len() >= MAX_KEYS {
            map.retain(|_, e| !e.idle(now));
        }
        for key in keys {
            let entry = map.entry(key.clone()).or_default();
            if entry.locked_until.is_some() {
                // The lockout is over: the count starts again.
                *entry = Entry {
                    in_flight: entry.in_flight,
                    ..Entry::default()
                };
            }
            entry.in_flight += 1;
        }
        Verdict::LetIn
    }

    fn finish(&self, keys: &[String], succeeded: bool) {
        let now = Instant::now();
        {
            let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            for key in keys {
                let Some(entry) = map.get_mut(key) else { continue };
                entry.in_flight = entry.in_flight.saturating_sub(1);
                if succeeded {
                    entry.failures = 0;
                    entry.locked_until = None;
                } else {
                    entry.failures = entry.failures.saturating_add(1);
                    if entry.failures >= self.max_failures && entry.locked_until.is_none() {
                        // A lockout too long for the clock (a config value) is as
                        // good as forever.
                        entry.locked_until = now.checked_add(self.lockout).or(Some(now + FOREVER));
                    }
                }
                if entry.failures == 0 && entry.idle(now) {
                    map.remove(key);
                }
            }
        }
        self.finished.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn keys() -> Vec<String> {
        vec!["user:ann".to_string(), "addr:10.0.0.9".to_string()]
    }

    #[tokio::test]
    async fn locks_after_max_failures_and_forgives_after_lockout() {
        let t = Throttle::new(3, Duration::from_millis(50));
        for _ in 0..3 {
            drop(t.attempt(&keys()).await.unwrap());
        }
        assert!(t.attempt(&keys()).await.is_err(), "three failures lock");
        assert!(t.attempt(&["user:bob".to_string()]).await.is_ok());
        assert!(
            t.attempt(&["addr:10.0.0.9".to_string()]).await.is_err(),
            "the address is locked too"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        drop(t.attempt(&keys()).await.expect("forgiven"));
        drop(t.attempt(&keys()).await.expect("the count restarts after a lockout"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_wrong_attempts_get_max_failures_checks_between_them() {
        let t = Arc::new(Throttle::new(5, Duration::from_secs(60)));
        let checked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tries: Vec<_> = (0..32)
            .map(|_| {
                let (t, checked) = (Arc::clone(&t), Arc::clone(&checked));
                tokio::spawn(async move {
                    let Ok(attempt) = t.attempt(&keys()).await else { return };
                    checked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    drop(attempt);
                })
            })
            .collect();
        for t in tries {
            t.await.unwrap();
        }
        assert_eq!(checked.load(std::sync::atomic::Ordering::SeqCst), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_right_attempts_all_go_through() {
        let t = Arc::new(Throttle::new(5, Duration::from_secs(60)));
        let tries: Vec<_> = (0..12)
            .map(|_| {
                let t = Arc::clone(&t);
                tokio::spawn(async move {
                    let attempt = t.attempt(&keys()).await.expect("let in");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    attempt.succeeded();
                })
            })
            .collect();
        for t in tries {
            t.await.unwrap();
        }
        assert!(t.keys.lock().unwrap().is_empty(), "nothing left to remember");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_attempts_wait_than_the_budget() {
        let t = Arc::new(Throttle::new(2, Duration::from_secs(60)));
        let held: Vec<_> = [t.attempt(&keys()).await.unwrap(), t.attempt(&keys()).await.unwrap()].into();
        let waiters: Vec<_> = (0..2 * WAITERS_PER_FAILURE)
            .map(|_| {
                let t = Arc::clone(&t);
                tokio::spawn(async move { t.attempt(&keys()).await.map(|a| a.succeeded()) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            t.attempt(&keys()).await.err(),
            Some(Refused::Busy),
            "one more does not wait"
        );
        // The checks in flight fail: the waiters are refused by the lockout.
        drop(held);
        for w in waiters {
            assert!(matches!(w.await.unwrap(), Err(Refused::Locked(_))));
        }
        assert_eq!(t.keys.lock().unwrap().values().map(|e| e.waiting).sum::<u32>(), 0);
    }

    #[tokio::test]
    async fn a_success_clears_the_count() {
        let t = Throttle::new(2, Duration::from_secs(60));
        drop(t.attempt(&keys()).await.unwrap());
        t.attempt(&keys()).await.unwrap().succeeded();
        drop(t.attempt(&keys()).await.unwrap());
        drop(t.attempt(&keys()).await.unwrap());
        assert!(t.attempt(&keys()).await.is_err());
    }

    #[tokio::test]
    async fn a_lockout_longer_than_the_clock_locks_without_panicking() {
        let t = Throttle::new(1, Duration::MAX);
        drop(t.attempt(&keys()).await.unwrap());
        assert!(t.attempt(&keys()).await.is_err());
    }
}
