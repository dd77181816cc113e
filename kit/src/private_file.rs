//! Files and folders only their owner may read: the data dir (0700), the broker's
//! service credentials, the secret key, the database and a saved login (0600).

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

/// Creates `dir` (and missing parents) with mode 0700, and tightens an existing
/// one to 0700: the data dir holds password hashes and keys.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Tightens `path` to 0600 if it exists.
pub fn restrict(path: &Path) -> std::io::Result<()> {
    match fs::set_permissions(path, fs::Permissions::from_mode(0o600)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Creates `path` empty with mode 0600 unless it exists, then tightens it to 0600
/// either way: for files another library creates (SQLite gives its `-wal` and
/// `-shm` files the database file's mode, so a database made private first stays
/// private).
pub fn ensure_private(path: &Path) -> std::io::Result<()> {
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => restrict(path),
        Err(e) => Err(e),
    }
}

/// Reads the file at `path`, or creates it (and its directory, 0700) with
/// `generate`'s bytes. An existing file is tightened to 0600.
///
/// The file is created with `create_new` and mode 0600 from the start: the secret is
/// never readable by others, and two processes racing on first start cannot both
/// write it (the loser reads the winner's).
pub fn load_or_create(path: &Path, generate: impl FnOnce() -> Vec<u8>) -> std::io::Result<Zeroizing<Vec<u8>>> {
    if path.exists() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        return fs::read(path).map(Zeroizing::new);
    }
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        private_dir(dir)?;
    }
    let bytes = Zeroizing::new(generate());
    let mut file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return fs::read(path).map(Zeroizing::new),
        Err(e) => return Err(e),
    };
    file.write_all(&bytes).and_then(|_| file.sync_all())?;
    Ok(bytes)
}

/// Writes `bytes` to `path` with mode 0600, replacing it atomically: written to a
/// temporary file of this writer's own (so writers in parallel never remove or
/// rename each other's), synced, then renamed over `path`. A missing directory is
/// created 0700.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        private_dir(dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}.{}-{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn parallel_writers_all_succeed_and_leave_one_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg").join("login.json");
        std::thread::scope(|s| {
            for i in 0..16 {
                let path = &path;
                s.spawn(move || write(path, format!("{{\"n\":{i}}}").as_bytes()).unwrap());
            }
        });
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let left: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        assert!(fs::read_to_string(&path).unwrap().starts_with("{\"n\":"));
    }

    #[test]
    fn existing_files_and_dirs_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        let db = data.join("cubeos.db");
        fs::write(&db, b"").unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        ensure_private(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        let fresh = data.join("new.db");
        ensure_private(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);
        restrict(&data.join("missing")).unwrap();
    }
}
