//! Store archives: a `.tar`, `.tar.gz` or `.tgz` of a store copy, unpacked with
//! bounds of our own. The archive is anyone's file: no entry may land outside the
//! folder it is unpacked into, and a small file may not unpack to fill the disk
//! (a gzip of zeros) or to millions of files.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path};

use cubeos_kit::BusError;

/// What is kept of an archive, at most: the store's compose files and icons.
pub const MAX_UNPACKED_BYTES: u64 = 64 * 1024 * 1024;

/// Files kept of an archive, at most (a compose file and an icon per app).
pub const MAX_FILES: usize = 2 * super::MAX_APPS;

/// The tar stream read, at most, kept or not: a repository's screenshots pass
/// through, a gzip bomb stops here.
pub const MAX_STREAM_BYTES: u64 = 1024 * 1024 * 1024;

/// Why an archive was not unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("'{0}': an archive entry's path must be relative and stay inside the archive")]
    Escapes(String),
    #[error("the archive's compose files and icons take more than {} MiB", MAX_UNPACKED_BYTES >> 20)]
    TooLarge,
    #[error("the archive has more than {MAX_FILES} compose files and icons")]
    TooManyFiles,
    #[error("the archive is not a readable tar or tar.gz: {0}")]
    Unreadable(#[from] std::io::Error),
}

impl From<ArchiveError> for BusError {
    fn from(e: ArchiveError) -> Self {
        BusError::bad_request(format!("path: {e}"))
    }
}

/// Whether `path` is named like an archive [`unpack`] reads.
pub fn is_archive(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    [".tar", ".tar.gz", ".tgz"].iter().any(|ext| name.ends_with(ext))
}

/// Whether the store needs an archive's file: a compose file or an icon (nothing
/// else is written, so nothing else can fill the disk).
fn wanted(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name == super::ICON_FILE || name.ends_with(".yml") || name.ends_with(".yaml")
}

/// Unpacks the compose files and icons of the archive at `archive` (plain tar, or
/// gzipped: told by its first bytes) into the folder `into`; returns how many.
/// Links, devices and every other kind of entry are left out.
pub fn unpack(archive: &Path, into: &Path) -> Result<usize, ArchiveError> {
    let mut input = BufReader::new(File::open(archive)?);
    let gzipped = input.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let stream: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::GzDecoder::new(input))
    } else {
        Box::new(input)
    };
    let mut tar = tar::Archive::new(Limited {
        inner: stream,
        left: MAX_STREAM_BYTES,
    });
    let (mut files, mut bytes) = (0usize, 0u64);
    for entry in tar.entries()? {
        let entry = entry?;
        let path = entry.path()?.into_owned();
        // Every entry, kept or not: an archive that tries is refused whole.
        if !path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(ArchiveError::Escapes(path.display().to_string()));
        }
        if !entry.header().entry_type().is_file() || !wanted(&path) {
            continue;
        }
        files += 1;
        bytes += entry.size();
        if files > MAX_FILES {
            return Err(ArchiveError::TooManyFiles);
        }
        if bytes > MAX_UNPACKED_BYTES {
            return Err(ArchiveError::TooLarge);
        }
        let target = into.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let size = entry.size();
        std::io::copy(&mut entry.take(size), &mut File::create(&target)?)?;
    }
    Ok(files)
}

/// A reader that fails once it has given `left` bytes.
struct Limited<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other(format!(
                "it unpacks to more than {} MiB",
                MAX_STREAM_BYTES >> 20
            )));
        }
        let most = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..most])?;
        self.left -= n as u64;
        Ok(n)
    }
}
