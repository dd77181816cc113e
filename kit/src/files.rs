//! Reading files people bring to the box (an app store copy, icons): bounded in
//! size, and never through a symbolic link, so a store on a USB stick cannot make
//! the box serve a file from elsewhere on it.

use std::io::Read;
use std::path::Path;

/// An app's icon file, in its store dir and in an installed app's `appconfig/`.
pub const ICON_FILE: &str = "icon.png";

/// The largest icon kept or served.
pub const MAX_ICON_BYTES: u64 = 1024 * 1024;

/// What every PNG file starts with.
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// A regular file's bytes (not a link to one), refused past `limit`; it reads no
/// further than one byte past it.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let link = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !link.is_file() {
        return Err("not a regular file".into());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("larger than {} KiB", limit / 1024));
    }
    Ok(bytes)
}

/// A PNG icon's bytes, when `path` is one of at most [`MAX_ICON_BYTES`].
pub fn read_icon(path: &Path) -> Option<Vec<u8>> {
    read_bounded(path, MAX_ICON_BYTES)
        .ok()
        .filter(|bytes| bytes.starts_with(PNG_MAGIC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_big_files_and_non_pngs_are_not_icons() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("icon.png");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\nrest").unwrap();
        assert!(read_icon(&png).is_some());
        let link = dir.path().join("link.png");
        std::os::unix::fs::symlink(&png, &link).unwrap();
        assert!(read_icon(&link).is_none());
        let text = dir.path().join("text.png");
        std::fs::write(&text, b"not a png").unwrap();
        assert!(read_icon(&text).is_none());
        assert_eq!(read_bounded(&text, 3), Err("larger than 0 KiB".into()));
        assert!(read_icon(dir.path()).is_none());
    }
}
