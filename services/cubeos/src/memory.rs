//! How the C allocator behaves in a process meant to run for months.
//!
//! Two glibc defaults make `cubeos up` keep memory it no longer uses (measured:
//! 17.7 MB fresh, 36 MB after the first admin's argon2id hash, never returned):
//! - the mmap threshold adapts upwards after a large block is freed, so the next
//!   large block (argon2's 19 MiB working memory) comes from a heap arena, which
//!   keeps it; a fixed threshold sends every large block back to the kernel on free;
//! - up to eight arenas per core, each keeping its own free memory; two suffice
//!   for a handful of threads that mostly wait.

/// Applies both settings; call before any thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// Blocks from this size up are mapped and unmapped on their own.
        const MMAP_THRESHOLD: libc::c_int = 256 * 1024;
        const ARENAS: libc::c_int = 2;
        // SAFETY: mallopt only changes allocator parameters; called once, before
        // any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}
