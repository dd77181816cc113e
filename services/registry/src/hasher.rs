//! Password hashing that a flood of sign-ins cannot turn into a memory leak.
//!
//! argon2id is meant to cost memory: 19 MiB of working memory per hash (the
//! crate's defaults, OWASP's minimum). Left to itself, argon2 allocates that with
//! `Vec`, and glibc keeps it: after the first 19 MiB block is freed, glibc raises its
//! mmap threshold above it, so later blocks come from per-thread arenas that are
//! never trimmed. Sixteen parallel wrong passwords took a fresh `cubeos up` from
//! 17.6 MB to 544 MB, and it stayed there.
//!
//! So, here:
//! - at most `auth.max_concurrent_hashes` hashes run at once, and at most
//!   `auth.max_queued_hashes` more wait; anything beyond is refused at once
//!   ([`RegistryError::Busy`], `unavailable` on the wire, CONNACK 3 at the gate).
//!   Token sign-ins never come here, so a flood of passwords never blocks them;
//! - each hash gets its working memory from an anonymous mapping of its own,
//!   unmapped when it is done, so the memory goes back to the system at once
//!   instead of to an allocator that keeps it;
//! - a sign-in for a user who does not exist is checked against [`DUMMY_HASH`],
//!   made with the same parameters, so it costs what a wrong password costs.

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

use crate::error::{RegistryError, Result};

/// What an unknown user's sign-in is checked against: an argon2id PHC string with
/// the default parameters whose output is random, so no password is known to
/// match it (and an unknown user never matches anyway). The
/// `dummy_hash_has_the_default_parameters` test keeps its parameters those of new
/// hashes, so it costs exactly what a real one does.
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$ZHVtbXktc2FsdC1mb3ItdW5rbm93bi11c2Vycw$9w0gS0sO7yPjnm3o02Abd7tZYmhY6rQP9pdJP3y9QOw";

/// Stored hashes asking for more working memory than this (KiB) are refused rather
/// than computed: a row written by hand must not make every sign-in map gigabytes.
const MAX_M_COST: u32 = 64 * 1024;

/// Runs argon2id within the configured bounds.
pub struct Hasher {
    running: Arc<Semaphore>,
    /// Hashes running or waiting.
    admitted: AtomicUsize,
    /// Most hashes running or waiting at once.
    capacity: usize,
}

/// A place among the admitted; given back when dropped.
struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hasher {
    pub fn new(max_concurrent: usize, max_queued: usize) -> Hasher {
        let running = max_concurrent.max(1);
        Hasher {
            running: Arc::new(Semaphore::new(running)),
            admitted: AtomicUsize::new(0),
            capacity: running.saturating_add(max_queued),
        }
    }

    /// Hashes running or waiting right now.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::SeqCst)
    }

    /// A new PHC string for `password`, with a fresh salt.
    pub async fn hash(&self, password: Zeroizing<String>) -> Result<String> {
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            let params = Params::default();
            let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
            let output = compute(&argon, &params, password.as_bytes(), salt.as_salt())?;
            let phc = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params).map_err(|_| failed())?,
                salt: Some(salt.as_salt()),
                hash: Some(output),
            };
            Ok(phc.to_string())
        })
        .await
    }

    /// Whether `password` matches `stored`; `None` (no such user) is checked
    /// against [`DUMMY_HASH`] and never matches.
    pub async fn verify(&self, password: Zeroizing<String>, stored: Option<String>) -> Result<bool> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let matched = self.run(move || Ok(matches(&stored, password.as_bytes()))).await?;
        Ok(known && matched)
    }

    /// Runs `work` off the async threads once admitted and a slot is free. The slot
    /// goes with the work, so a caller that gives up does not free it early.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
        if self.admitted.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(RegistryError::Busy(
                "too many sign-ins at once; try again in a moment".into(),
            ));
        }
        let _admitted = Admitted(&self.admitted);
        let slot: OwnedSemaphorePermit = Arc::clone(&self.running).acquire_owned().await.map_err(|_| failed())?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .map_err(|_| failed())?
    }
}

fn failed() -> RegistryError {
    RegistryError::Crypto("password hashing failed")
}

/// Whether `password` matches the PHC string `stored`. A string that does not
/// parse, or asks for too much memory, matches nothing.
fn matches(stored: &str, password: &[u8]) -> bool {
    let check = || -> Result<bool> {
        let parsed = PasswordHash::new(stored).map_err(|_| failed())?;
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|_| failed())?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|_| failed())?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).map_err(|_| failed())?;
        if params.m_cost() > MAX_M_COST {
            tracing::warn!(
                m_cost = params.m_cost(),
                "a stored password hash asks for too much memory"
            );
            return Ok(false);
        }
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Ok(false);
        };
        let argon = Argon2::new(algorithm, version, params.clone());
        // `Output`'s equality is constant-time.
        Ok(compute(&argon, &params, password, salt)? == expected)
    };
    check().unwrap_or(false)
}

/// One argon2 computation, its working memory mapped for it and unmapped after.
fn compute(argon: &Argon2<'_>, params: &Params, password: &[u8], salt: Salt<'_>) -> Result<Output> {
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes).map_err(|_| failed())?;
    let mut memory = Memory::map(params.block_count()).map_err(|_| failed())?;
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    Output::init_with(len, |out| {
        argon
            .hash_password_into_with_memory(password, salt, out, memory.blocks())
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|_| failed())
}

/// argon2's working memory: an anonymous private mapping, zero-filled by the kernel
/// and unmapped on drop, so it never passes through (or stays in) the allocator.
struct Memory {
    blocks: NonNull<Block>,
    count: usize,
}

// SAFETY: the mapping is owned by this value alone and holds plain integers.
unsafe impl Send for Memory {}

impl Memory {
    fn map(count: usize) -> std::io::Result<Memory> {
        let bytes = Self::bytes(count)?;
        // SAFETY: a fresh anonymous private mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let blocks = NonNull::new(ptr.cast::<Block>()).ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Memory { blocks, count })
    }

    fn bytes(count: usize) -> std::io::Result<usize> {
        count
            .checked_mul(std::mem::size_of::<Block>())
            .filter(|&b| b > 0)
            .ok_or_else(|| std::io::Error::other("no memory to map"))
    }

    fn blocks(&mut self) -> &mut [Block] {
        // SAFETY: the mapping is `count` blocks long, page-aligned (more than
        // `Block`'s 64-byte alignment), zero-filled (a valid `Block` is any bit
        // pattern of its integers), and borrowed mutably through `self` only.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_ptr(), self.count) }
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        if let Ok(bytes) = Self::bytes(self.count) {
            // SAFETY: unmaps exactly the mapping made in `map`, no longer borrowed.
            unsafe {
                libc::munmap(self.blocks.as_ptr().cast(), bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;

    #[tokio::test]
    async fn hashes_verify_here_and_with_the_argon2_crate() {
        let hasher = Hasher::new(2, 2);
        let hash = hasher.hash(Zeroizing::new("correct horse".into())).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(
            hasher
                .verify(Zeroizing::new("correct horse".into()), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(Zeroizing::new("wrong horse".into()), Some(hash.clone()))
                .await
                .unwrap()
        );
        // The crate's own verifier agrees, so hashes made before this module still
        // verify, and these verify elsewhere.
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        let old = {
            use argon2::PasswordHasher;
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default().hash_password(b"legacy", &salt).unwrap().to_string()
        };
        assert!(hasher.verify(Zeroizing::new("legacy".into()), Some(old)).await.unwrap());
        assert!(
            !hasher
                .verify(Zeroizing::new("x".into()), Some("not a hash".into()))
                .await
                .unwrap()
        );
    }

    #[test]
    fn dummy_hash_has_the_default_parameters() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        let params = Params::try_from(&parsed).unwrap();
        let default = Params::default();
        assert_eq!(parsed.algorithm, Algorithm::Argon2id.ident());
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (default.m_cost(), default.t_cost(), default.p_cost())
        );
        assert_eq!(parsed.hash.unwrap().len(), Params::DEFAULT_OUTPUT_LEN);
    }

    #[tokio::test]
    async fn an_unknown_user_never_matches_even_the_dummy_password() {
        let hasher = Hasher::new(1, 0);
        assert!(!hasher.verify(Zeroizing::new(String::new()), None).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_queue_sign_ins_are_refused_at_once() {
        let hasher = Arc::new(Hasher::new(1, 1));
        let tries: Vec<_> = (0..8)
            .map(|i| {
                let h = Arc::clone(&hasher);
                tokio::spawn(async move { h.verify(Zeroizing::new(format!("pw{i}")), None).await })
            })
            .collect();
        let mut busy = 0;
        for t in tries {
            match t.await.unwrap() {
                Err(RegistryError::Busy(_)) => busy += 1,
                Ok(false) => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(busy >= 6, "one runs, one waits, the rest are refused: {busy} refused");
        assert_eq!(hasher.admitted(), 0);
    }
}
