//! Where a bind mount's host side goes.
//!
//! CasaOS apps keep their state in `/DATA/AppData/<AppID>/...` and share media and
//! downloads under the rest of `/DATA/...`. CubeOS moves the first into the app's
//! data path and the second into the shared data folder, both under the data root.
//! Relative paths belong to the app. Any other absolute host path reaches outside
//! CubeOS's data (the Docker socket, `/dev`, `/etc`, `/`), so it is kept as written
//! but reported, and needs force. Time-zone files are harmless once read-only, so
//! they are always mounted read-only.

use std::path::{Component, Path, PathBuf};

/// Host files any app may read: they carry the time zone, nothing else.
const HARMLESS_READ_ONLY: &[&str] = &["/etc/localtime", "/etc/timezone"];

/// What a bind source became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPath {
    /// Under the data root; the directory is created before deploying.
    Owned(PathBuf),
    /// A host path outside the data root; `harmless` ones are mounted read-only.
    Foreign { path: PathBuf, harmless: bool },
}

/// Maps a bind source. `None` when it climbs out with `..` (refused outright).
pub fn map(source: &str, app_id: &str, app_data: &Path, shared_data: &Path) -> Option<HostPath> {
    let path = Path::new(source);
    if path.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    let app_prefix = Path::new("/DATA/AppData").join(app_id);
    if let Ok(rest) = path.strip_prefix(&app_prefix) {
        return Some(HostPath::Owned(under(app_data, rest)));
    }
    if let Ok(rest) = path.strip_prefix("/DATA") {
        return Some(HostPath::Owned(under(shared_data, rest)));
    }
    if let Some(rest) = source.strip_prefix("./").or_else(|| (source == ".").then_some("")) {
        return Some(HostPath::Owned(app_data.join(rest)));
    }
    if source.starts_with('.') || source.starts_with('~') {
        // `.hidden` relative names and home directories: keep them inside the app.
        let rest = source.trim_start_matches('~').trim_start_matches('/');
        return Some(HostPath::Owned(app_data.join(rest)));
    }
    let harmless = HARMLESS_READ_ONLY.contains(&source.trim_end_matches('/'));
    Some(HostPath::Foreign {
        path: path.to_path_buf(),
        harmless,
    })
}

/// `root/rest`, without the trailing separator `Path::join("")` would add.
fn under(root: &Path, rest: &Path) -> PathBuf {
    if rest.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(source: &str) -> Option<HostPath> {
        map(
            source,
            "navidrome",
            Path::new("/cubeos/apps/navidrome/appdata"),
            Path::new("/cubeos/data"),
        )
    }

    #[test]
    fn casaos_paths_move_under_the_data_root() {
        assert_eq!(
            m("/DATA/AppData/navidrome/data"),
            Some(HostPath::Owned("/cubeos/apps/navidrome/appdata/data".into()))
        );
        assert_eq!(
            m("/DATA/AppData/navidrome"),
            Some(HostPath::Owned("/cubeos/apps/navidrome/appdata".into()))
        );
        assert_eq!(
            m("/DATA/Media/Music"),
            Some(HostPath::Owned("/cubeos/data/Media/Music".into()))
        );
        assert_eq!(
            m("/DATA/AppData/other-app/x"),
            Some(HostPath::Owned("/cubeos/data/AppData/other-app/x".into()))
        );
        assert_eq!(
            m("./config"),
            Some(HostPath::Owned("/cubeos/apps/navidrome/appdata/config".into()))
        );
    }

    #[test]
    fn host_paths_are_foreign_and_traversal_refused() {
        assert_eq!(
            m("/var/run/docker.sock"),
            Some(HostPath::Foreign {
                path: "/var/run/docker.sock".into(),
                harmless: false
            })
        );
        assert_eq!(
            m("/etc/localtime"),
            Some(HostPath::Foreign {
                path: "/etc/localtime".into(),
                harmless: true
            })
        );
        assert_eq!(
            m("/etc/timezone"),
            Some(HostPath::Foreign {
                path: "/etc/timezone".into(),
                harmless: true
            })
        );
        assert_eq!(m("/DATA/AppData/navidrome/../../../etc"), None);
        assert_eq!(
            m("/"),
            Some(HostPath::Foreign {
                path: "/".into(),
                harmless: false
            })
        );
    }
}
