//! Files only their owner may read (mode 0600), created once: the broker's service
//! credentials and the secret key.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

/// Reads the file at `path`, or creates it (and its directory) with `generate`'s
/// bytes. An existing file is tightened to 0600.
///
/// The file is created with `create_new` and mode 0600 from the start: the secret is
/// never readable by others, and two processes racing on first start cannot both
/// write it (the loser reads the winner's).
pub fn load_or_create(path: &Path, generate: impl FnOnce() -> Vec<u8>) -> std::io::Result<Zeroizing<Vec<u8>>> {
    if path.exists() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        return fs::read(path).map(Zeroizing::new);
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
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

/// Writes `bytes` to `path` with mode 0600, replacing it atomically.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    file.write_all(bytes).and_then(|_| file.sync_all())?;
    fs::rename(&tmp, path)
}
