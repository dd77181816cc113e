//! Reply slots: the fixed set of client ids one-off local clients (the CLI on the
//! box) take turns with.
//!
//! rumqttd keeps an in-memory log for every subscription filter it ever saw and
//! never frees one, and a client's reply topic is named after its client id. A CLI
//! call under a fresh id would leave its reply log behind for good (about 28 KiB a
//! call, measured); under one of `bus.cli_slots` leased ids, the broker only ever
//! sees that many reply filters, however often the CLI runs.
//!
//! A slot is leased with an exclusive `flock` on `<data>/slots/<name>-<n>.lock`:
//! two processes never hold the same one (the broker would otherwise hand the
//! connection from one to the other, as MQTT's client-id takeover requires), and
//! a process that dies, however it dies, lets its slot go with its file
//! descriptor.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long to sleep between rounds when every slot is taken.
const RETRY: Duration = Duration::from_millis(20);

/// Why no slot could be leased.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("cannot open the slot lock {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("all {count} reply slots stayed busy for {waited:?} (bus.cli_slots)")]
    Busy { count: usize, waited: Duration },
}

/// A leased client id, held until this value is dropped.
#[derive(Debug)]
pub struct Slot {
    client_id: String,
    /// Holds the lock: closing the file releases it.
    _lock: File,
}

impl Slot {
    /// Leases the first free one of `count` slots named `<name>-0` .. `<name>-<count-1>`
    /// under `dir`, waiting up to `wait` while all are taken.
    pub fn lease(dir: &Path, name: &str, count: usize, wait: Duration) -> Result<Slot, SlotError> {
        std::fs::create_dir_all(dir).map_err(|source| SlotError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        let started = Instant::now();
        loop {
            for n in 0..count.max(1) {
                let client_id = format!("{name}-{n}");
                let path = dir.join(format!("{client_id}.lock"));
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|source| SlotError::Open {
                        path: path.display().to_string(),
                        source,
                    })?;
                match file.try_lock() {
                    Ok(()) => return Ok(Slot { client_id, _lock: file }),
                    Err(TryLockError::WouldBlock) => continue,
                    Err(TryLockError::Error(source)) => {
                        return Err(SlotError::Open {
                            path: path.display().to_string(),
                            source,
                        });
                    }
                }
            }
            if started.elapsed() >= wait {
                return Err(SlotError::Busy {
                    count,
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(RETRY);
        }
    }

    /// The client id this slot stands for.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_exclusive_and_come_back_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let a = Slot::lease(dir.path(), "cli", 2, Duration::ZERO).unwrap();
        let b = Slot::lease(dir.path(), "cli", 2, Duration::ZERO).unwrap();
        assert_ne!(a.client_id(), b.client_id());
        assert!(matches!(
            Slot::lease(dir.path(), "cli", 2, Duration::from_millis(50)),
            Err(SlotError::Busy { count: 2, .. })
        ));
        let freed = a.client_id().to_owned();
        drop(a);
        let c = Slot::lease(dir.path(), "cli", 2, Duration::ZERO).unwrap();
        assert_eq!(c.client_id(), freed);
    }
}
