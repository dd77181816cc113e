//! The offline app store: a copy of a CasaOS app store kept in the data dir,
//! imported by `store.add`, listed and searched by `store.list`, read by
//! `store.get`, and installed from by `install {store}`.
//!
//! Layout, all under `<data>/store/` (an import writes nowhere else):
//!
//! | path | what |
//! |---|---|
//! | `apps/<id>/docker-compose.yml` | the app's compose file, as imported |
//! | `apps/<id>/icon.png` | its icon, when the store had one ([`icon_path`]; the dashboard serves it) |
//! | `.import-<random>/` | one import's unpacked archive, staged apps and replaced ones; removed after it |
//!
//! `<id>` is the store's own name for the app (`Jellyfin`, `2FAuth`): 1-64 of
//! `A-Z a-z 0-9 . _ -`, not starting with '.'. The app `name` an install gives is
//! what installing the file would give: its `name:`, else the id in lower case.
//! An install from the store copies the icon to the app's own
//! `<data>/apps/<name>/appconfig/icon.png` ([`app_icon_path`]).
//!
//! An import reads (a) a CasaOS store repository (`Apps/<Name>/docker-compose.yml`
//! with `icon.png` beside it), or its `Apps` folder; (b) a folder of compose files
//! (`<Name>.yml`, the id being the file's stem); (c) a `.tar`, `.tar.gz` or `.tgz`
//! of either (see [`archive`]), unpacked into the store's own `.import-*` folder.
//! Every file is translated as an install would translate it: one that does not
//! translate, or is too large, is skipped with its reason and never fails the
//! import. Each app is staged whole and then renamed into place, so an app already
//! in the store is replaced by the new copy, never mixed with it.
//!
//! The parsed list is cached, and read again by each import. Whether the box has each app's
//! images is asked of Docker at each listing, in one query for all of them;
//! without Docker the listing still answers, with `missing_images` empty (unknown,
//! not present: an install says so when it runs).

pub mod archive;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cubeos_compose::{self as compose, ComposeError, Context, Translation, Vars};
use cubeos_contract::api::store::*;
use cubeos_contract::validate;
use cubeos_kit::files::{ICON_FILE, read_bounded, read_icon};
use cubeos_kit::{BusError, Config};
use tracing::warn;

use crate::images;
use crate::service::{Orchestrator, docker_error, images_of, io_error};

/// The largest compose file a store app may have.
pub const MAX_COMPOSE_BYTES: u64 = 256 * 1024;

/// The most apps the store holds.
pub const MAX_APPS: usize = 2000;

/// The longest `store.list` query.
const MAX_QUERY_CHARS: usize = 1024;

/// Entries one folder of an import may have: a bound on the scan.
const MAX_DIR_ENTRIES: usize = 20_000;

/// How many single folders an import goes down to find its apps (an archive's
/// `CasaOS-AppStore-main/`, a checkout's `Apps/`).
const MAX_DESCENT: usize = 3;

/// A store app's compose file, in its folder.
const COMPOSE_FILE: &str = "docker-compose.yml";
/// How an import's work folder in `<data>/store/` is named.
const IMPORT_PREFIX: &str = ".import-";

/// `bad_request` unless `id` is a store id.
fn check_id(id: &str) -> Result<(), BusError> {
    if validate::is_store_id(id) {
        Ok(())
    } else {
        Err(BusError::bad_request(format!(
            "id: '{}' is not a store id (1-64 of A-Z a-z 0-9 . _ -, not starting with '.')",
            validate::truncate(id, 64)
        )))
    }
}

/// Where installed app `name`'s icon is (`<data>/apps/<name>/appconfig/icon.png`,
/// beside its compose file; the file exists when it was installed from the store
/// with one); `None` for anything that is not an app name.
pub fn app_icon_path(config: &Config, name: &str) -> Option<PathBuf> {
    validate::name("name", name).ok()?;
    Some(config.app_icon(name))
}

/// The app name installing store app `id` gives: the file's `name:`, else the id
/// as a file name (`Jellyfin_Nvidia` -> `jellyfin-nvidia`).
pub fn app_name(id: &str, compose_text: &str) -> String {
    compose::default_name(compose_text, Path::new(&format!("{id}.yml")))
}

/// Translates store app `id`'s file as installing it would.
fn translate(config: &Config, instance: &str, id: &str, text: &str) -> Result<(String, Translation), ComposeError> {
    let name = app_name(id, text);
    let ctx = Context::for_app(config, instance, &name, &Vars::new());
    compose::translate(text, &ctx).map(|t| (name, t))
}

/// A compose file's text, at most [`MAX_COMPOSE_BYTES`].
fn read_compose(path: &Path) -> Result<String, String> {
    String::from_utf8(read_bounded(path, MAX_COMPOSE_BYTES)?).map_err(|_| "not UTF-8 text".into())
}

/// One store app's files, as an install takes them.
#[derive(Debug, Clone)]
pub struct StoredApp {
    /// The app name an install gives it by default.
    pub name: String,
    /// The compose file's text.
    pub compose: String,
    /// The icon's bytes (a PNG), when the store has one.
    pub icon: Option<Vec<u8>>,
}

/// Reads store app `id`; `not_found` when the store has no such app.
pub fn read_app(config: &Config, id: &str) -> Result<StoredApp, BusError> {
    check_id(id)?;
    let dir = config.store_app_dir(id);
    let file = dir.join(COMPOSE_FILE);
    if !file.is_file() {
        return Err(BusError::not_found(format!("the store has no app '{id}'")));
    }
    let compose = read_compose(&file).map_err(|e| BusError::internal(format!("store app '{id}': {e}")))?;
    Ok(StoredApp {
        name: app_name(id, &compose),
        icon: read_icon(&dir.join(ICON_FILE)),
        compose,
    })
}

/// A compose file an import found, with the icon beside it.
#[derive(Debug)]
struct Found {
    id: String,
    compose: PathBuf,
    icon: Option<PathBuf>,
}

/// A folder's entries, sorted by name, at most [`MAX_DIR_ENTRIES`].
fn entries_of(dir: &Path) -> Result<Vec<std::fs::DirEntry>, BusError> {
    let bad = |e: std::io::Error| BusError::bad_request(format!("{}: {e}", dir.display()));
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(bad)? {
        entries.push(entry.map_err(bad)?);
        if entries.len() > MAX_DIR_ENTRIES {
            return Err(BusError::bad_request(format!(
                "{}: more than {MAX_DIR_ENTRIES} entries",
                dir.display()
            )));
        }
    }
    entries.sort_by_key(std::fs::DirEntry::file_name);
    Ok(entries)
}

/// The apps of one folder: subfolders holding a `docker-compose.yml` (or
/// `.yaml`) and compose files (`<id>.yml`, `.yaml`). Links are not followed.
fn apps_in(entries: &[std::fs::DirEntry]) -> Vec<Found> {
    let mut found = Vec::new();
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else { continue };
        let path = entry.path();
        if kind.is_dir() && !name.starts_with('.') {
            let compose = ["docker-compose.yml", "docker-compose.yaml"]
                .iter()
                .map(|f| path.join(f))
                .find(|f| f.is_file());
            if let Some(compose) = compose {
                let icon = Some(path.join(ICON_FILE)).filter(|i| i.is_file());
                found.push(Found {
                    id: name,
                    compose,
                    icon,
                });
            }
        } else if kind.is_file()
            && let Some(stem) = [".yml", ".yaml"].iter().find_map(|ext| name.strip_suffix(ext))
        {
            found.push(Found {
                id: stem.to_owned(),
                compose: path,
                icon: None,
            });
        }
    }
    found
}

/// The apps of an import's folder: its own, else its `Apps` folder's, else those
/// of its one subfolder (an archive's top folder), a few levels down at most.
fn find_apps(root: &Path) -> Result<Vec<Found>, BusError> {
    let mut dir = root.to_path_buf();
    for _ in 0..=MAX_DESCENT {
        if dir.join("Apps").is_dir() {
            dir.push("Apps");
        }
        let entries = entries_of(&dir)?;
        let found = apps_in(&entries);
        if !found.is_empty() {
            return Ok(found);
        }
        let mut folders = entries
            .iter()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && !e.file_name().to_string_lossy().starts_with('.'));
        match (folders.next(), folders.next()) {
            (Some(only), None) => dir = only.path(),
            _ => break,
        }
    }
    Ok(Vec::new())
}

/// The ids of the apps in the store now.
fn stored_ids(config: &Config) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(config.store_apps_dir()) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|id| validate::is_store_id(id))
        .collect();
    ids.sort();
    ids
}

/// Validates one found app and writes it to `staged/<id>/`.
fn stage(config: &Config, instance: &str, found: &Found, staged: &Path) -> Result<(), String> {
    let text = read_compose(&found.compose)?;
    translate(config, instance, &found.id, &text).map_err(|e| e.to_string())?;
    let dir = staged.join(&found.id);
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(COMPOSE_FILE), &text))
        .and_then(|()| match found.icon.as_deref().and_then(read_icon) {
            Some(icon) => std::fs::write(dir.join(ICON_FILE), icon),
            None => Ok(()),
        });
    written.map_err(|e| format!("not staged: {e}"))
}

/// Imports a store copy from `path` (absolute: a folder, or an archive of one)
/// into the store, replacing apps it has already.
pub fn import(config: &Config, instance: &str, path: &Path) -> Result<StoreAdded, BusError> {
    if !path.is_absolute() {
        return Err(BusError::bad_request(
            "path: must be absolute (a folder or archive on the box)",
        ));
    }
    let meta = std::fs::metadata(path).map_err(|e| BusError::bad_request(format!("path: {e}")))?;
    let apps = config.store_apps_dir();
    std::fs::create_dir_all(&apps).map_err(|e| io_error("store folder", e))?;
    remove_stale_imports(&config.store_dir());
    let work = tempfile::Builder::new()
        .prefix(IMPORT_PREFIX)
        .tempdir_in(config.store_dir())
        .map_err(|e| io_error("store import folder", e))?;
    let source = if meta.is_dir() {
        path.to_path_buf()
    } else if meta.is_file() && archive::is_archive(path) {
        let unpacked = work.path().join("unpacked");
        archive::unpack(path, &unpacked)?;
        unpacked
    } else {
        return Err(BusError::bad_request(
            "path: not a folder, nor a .tar, .tar.gz or .tgz archive",
        ));
    };
    let found = find_apps(&source)?;
    if found.is_empty() {
        return Err(BusError::bad_request(format!(
            "{}: no apps (expected Apps/<Name>/docker-compose.yml or <Name>.yml files)",
            path.display()
        )));
    }
    let staged = work.path().join("staged");
    let replaced = work.path().join("replaced");
    for dir in [&staged, &replaced] {
        std::fs::create_dir_all(dir).map_err(|e| io_error("store import folder", e))?;
    }
    let before: HashSet<String> = stored_ids(config).into_iter().collect();
    let mut added = BTreeSet::new();
    let mut skipped = Vec::new();
    for f in &found {
        let shown = f.compose.strip_prefix(&source).unwrap_or(&f.compose).display();
        let new = before.len() + added.iter().filter(|id| !before.contains(*id)).count();
        let why = if !validate::is_store_id(&f.id) {
            format!(
                "'{}' is not a store id (1-64 of A-Z a-z 0-9 . _ -, not starting with '.')",
                validate::truncate(&f.id, 64)
            )
        } else if added.contains(&f.id) {
            format!("another file of this import is app '{}'", f.id)
        } else if !before.contains(&f.id) && new >= MAX_APPS {
            format!("the store holds at most {MAX_APPS} apps")
        } else {
            match stage(config, instance, f, &staged) {
                Ok(()) => {
                    added.insert(f.id.clone());
                    continue;
                }
                Err(why) => why,
            }
        };
        skipped.push(format!("{shown}: {why}"));
    }
    for id in &added {
        let target = apps.join(id);
        let swapped = match std::fs::symlink_metadata(&target) {
            Ok(_) => std::fs::rename(&target, replaced.join(id)),
            Err(_) => Ok(()),
        }
        .and_then(|()| std::fs::rename(staged.join(id), &target));
        swapped.map_err(|e| io_error(&format!("store app '{id}'"), e))?;
    }
    Ok(StoreAdded {
        added: added.into_iter().collect(),
        skipped,
        total: stored_ids(config).len(),
    })
}

/// Removes the work folders of imports a crash cut off (called with the import
/// lock held: no other import is running).
fn remove_stale_imports(store: &Path) {
    let Ok(entries) = std::fs::read_dir(store) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(IMPORT_PREFIX)
            && let Err(e) = std::fs::remove_dir_all(entry.path())
        {
            warn!(dir = %entry.path().display(), error = %e, "store: an old import folder not removed");
        }
    }
}

/// One app of the store as the index holds it.
#[derive(Debug, Clone)]
pub struct Indexed {
    /// Without `missing_images`: those are asked at each listing.
    pub app: StoreApp,
    pub description: String,
}

/// Reads and translates every app of the store, sorted by title (case-insensitive,
/// then id). An app whose file no longer translates (edited by hand) is left out.
pub fn load_index(config: &Config, instance: &str) -> Vec<Indexed> {
    let apps = config.store_apps_dir();
    let mut index: Vec<Indexed> = stored_ids(config)
        .into_iter()
        .take(MAX_APPS)
        .filter_map(|id| {
            let dir = apps.join(&id);
            let read = read_compose(&dir.join(COMPOSE_FILE))
                .and_then(|text| translate(config, instance, &id, &text).map_err(|e| e.to_string()));
            match read {
                Ok((name, t)) => Some(Indexed {
                    app: StoreApp {
                        name,
                        title: t.app.display_name.clone(),
                        tagline: t.metadata.tagline.clone(),
                        category: t.metadata.category.clone(),
                        icon: dir.join(ICON_FILE).is_file(),
                        images: images_of(&t.services),
                        missing_images: Vec::new(),
                        refusals: t.refusals.clone(),
                        id,
                    },
                    description: t.metadata.description,
                }),
                Err(e) => {
                    warn!(app = %id, error = %e, "store: app left out of the list");
                    None
                }
            }
        })
        .collect();
    index.sort_by_cached_key(|e| (e.app.title.to_lowercase(), e.app.id.clone()));
    index
}

/// Whether `word` (lower case) is in the entry's id, title, tagline, description
/// or category.
fn matches(entry: &Indexed, word: &str) -> bool {
    let a = &entry.app;
    [&a.id, &a.title, &a.tagline, &entry.description, &a.category]
        .iter()
        .any(|field| field.to_lowercase().contains(word))
}

/// The apps of `index` that have every word of the query and the category (both
/// case-insensitive), with every category of the store.
pub fn search(index: &[Indexed], args: &StoreList) -> Result<StoreListing, BusError> {
    let query = args.query.as_deref().unwrap_or_default();
    if query.chars().count() > MAX_QUERY_CHARS {
        return Err(BusError::bad_request(format!(
            "query: at most {MAX_QUERY_CHARS} characters"
        )));
    }
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let category = args
        .category
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_lowercase);
    let apps = index
        .iter()
        .filter(|e| category.as_ref().is_none_or(|c| e.app.category.to_lowercase() == *c))
        .filter(|e| words.iter().all(|w| matches(e, w)))
        .map(|e| e.app.clone())
        .collect();
    let categories: BTreeSet<String> = index
        .iter()
        .map(|e| e.app.category.clone())
        .filter(|c| !c.is_empty())
        .collect();
    Ok(StoreListing {
        apps,
        categories: categories.into_iter().collect(),
        total: index.len(),
    })
}

/// The orchestrator's hold on the store: the cached index, and one import at a time.
pub struct Store {
    config: Arc<Config>,
    instance: String,
    cache: Mutex<Cache>,
    importing: tokio::sync::Mutex<()>,
    /// Held while the index is read from disk.
    loading: tokio::sync::Mutex<()>,
}

/// The index as last read, and the number of imports so far: an index a listing
/// read while an import ran is not kept.
#[derive(Default)]
struct Cache {
    imports: u64,
    index: Option<Arc<Vec<Indexed>>>,
}

impl Store {
    /// The store of the installation `instance` with data under `config.data_dir`.
    pub fn new(config: Arc<Config>, instance: String) -> Store {
        Store {
            config,
            instance,
            cache: Mutex::default(),
            importing: tokio::sync::Mutex::new(()),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// The cache, even after a panic elsewhere held its lock (it stays consistent).
    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The index, read (off the async threads) on first use.
    pub async fn index(&self) -> Result<Arc<Vec<Indexed>>, BusError> {
        if let Some(index) = self.cache().index.clone() {
            return Ok(index);
        }
        // One load at a time: listings that arrive together after a start wait for
        // it instead of each reading the whole store.
        let _loading = self.loading.lock().await;
        let imports = {
            let cache = self.cache();
            if let Some(index) = &cache.index {
                return Ok(Arc::clone(index));
            }
            cache.imports
        };
        let (config, instance) = (Arc::clone(&self.config), self.instance.clone());
        let index = tokio::task::spawn_blocking(move || load_index(&config, &instance))
            .await
            .map_err(|e| BusError::internal(format!("store index: {e}")))?;
        let index = Arc::new(index);
        let mut cache = self.cache();
        if cache.imports == imports {
            cache.index = Some(Arc::clone(&index));
        }
        Ok(index)
    }

    /// Imports a store copy (see [`import`]), one import at a time, and reads the
    /// index again at once: the next listing need not.
    pub async fn add(&self, path: String) -> Result<StoreAdded, BusError> {
        let _one_at_a_time = self.importing.lock().await;
        let (config, instance) = (Arc::clone(&self.config), self.instance.clone());
        let (result, index) = tokio::task::spawn_blocking(move || {
            let result = import(&config, &instance, Path::new(&path));
            // Even a failed import may have replaced some apps.
            (result, load_index(&config, &instance))
        })
        .await
        .map_err(|e| BusError::internal(format!("store import: {e}")))?;
        let mut cache = self.cache();
        cache.imports += 1;
        cache.index = Some(Arc::new(index));
        result
    }
}

impl Orchestrator {
    /// `store.add`: imports a store copy on this box.
    pub async fn store_add(&self, args: StoreAdd) -> Result<StoreAdded, BusError> {
        self.store.add(args.path).await
    }

    /// `store.list`: the store's apps, searched, with the images each lacks.
    pub async fn store_list(&self, args: StoreList) -> Result<StoreListing, BusError> {
        let index = self.store.index().await?;
        let mut listing = search(&index, &args)?;
        self.mark_missing_images(&mut listing.apps).await;
        Ok(listing)
    }

    /// `store.get`: one store app with its compose file and description.
    pub async fn store_get(&self, args: StoreGet) -> Result<StoreEntry, BusError> {
        check_id(&args.id)?;
        let index = self.store.index().await?;
        let not_found = || BusError::not_found(format!("the store has no app '{}'", args.id));
        let found = index.iter().find(|e| e.app.id == args.id).ok_or_else(not_found)?;
        let stored = read_app(&self.config, &args.id)?;
        let mut app = found.app.clone();
        self.mark_missing_images(std::slice::from_mut(&mut app)).await;
        Ok(StoreEntry {
            app,
            description: found.description.clone(),
            compose: stored.compose,
        })
    }

    /// Fills each app's `missing_images`, with one Docker query for all of them;
    /// leaves them empty when Docker does not answer.
    async fn mark_missing_images(&self, apps: &mut [StoreApp]) {
        let mut wanted: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for image in apps.iter().flat_map(|a| &a.images) {
            if seen.insert(image.as_str()) {
                wanted.push(image.clone());
            }
        }
        if wanted.is_empty() {
            return;
        }
        let registry = &self.config.orchestrator.local_registry;
        let states = match self.docker().await {
            Ok(docker) => images::check_listed(&docker, registry, &wanted)
                .await
                .map_err(docker_error),
            Err(e) => Err(e),
        };
        let states = match states {
            Ok(states) => states,
            Err(e) => return warn!(error = %e.message, "store: images not checked"),
        };
        let missing: HashSet<&str> = states.iter().filter(|s| !s.present).map(|s| s.image.as_str()).collect();
        for app in apps {
            app.missing_images = app
                .images
                .iter()
                .filter(|i| missing.contains(i.as_str()))
                .cloned()
                .collect();
        }
    }
}

#[cfg(test)]
mod tests;
