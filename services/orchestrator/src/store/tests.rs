//! The store's import, index and search, on files made in temp dirs.

use std::io::Write;

use super::*;

/// A compose file of a store app with its `x-casaos` texts.
fn app_file(image: &str, title: &str, category: &str, tagline: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    ports: ['8080:80']\nx-casaos:\n  title:\n    en_us: {title}\n  \
         tagline:\n    en_us: {tagline}\n  description:\n    en_us: The {title} app, for testing.\n  category: {category}\n"
    )
}

/// An icon: the PNG signature is all the store checks.
const ICON: &[u8] = b"\x89PNG\r\n\x1a\nnot really an image";

/// A data dir in a temp dir, and the config pointing at it.
fn setup() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    (dir, config)
}

/// Writes a file, with the folders it needs.
fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A CasaOS store repository's layout: two good apps (one with an icon), a broken
/// one and what else a checkout has.
fn repository(root: &Path) {
    let apps = root.join("Apps");
    write(
        &apps.join("Jellyfin/docker-compose.yml"),
        app_file("jellyfin/jellyfin:10", "Jellyfin", "Media", "Your media server").as_bytes(),
    );
    write(&apps.join("Jellyfin/icon.png"), ICON);
    write(&apps.join("Jellyfin/screenshot-1.png"), ICON);
    write(
        &apps.join("2FAuth/docker-compose.yml"),
        app_file("2fauth/2fauth:5", "2FAuth", "Utilities", "Two-factor codes").as_bytes(),
    );
    write(&apps.join("Broken/docker-compose.yml"), b"services: [unclosed\n");
    write(&apps.join("README.md"), b"# not an app\n");
    write(&root.join(".git/config"), b"[core]\n");
}

#[test]
fn a_repository_checkout_imports_with_icons_and_skips_what_does_not_parse() {
    let (dir, config) = setup();
    let source = dir.path().join("CasaOS-AppStore");
    repository(&source);
    let added = import(&config, "test", &source).unwrap();
    assert_eq!(added.added, ["2FAuth", "Jellyfin"]);
    assert_eq!(added.total, 2);
    assert_eq!(added.skipped.len(), 1, "{:?}", added.skipped);
    assert!(
        added.skipped[0].starts_with("Apps/Broken/docker-compose.yml: the compose file is not valid YAML"),
        "{:?}",
        added.skipped
    );

    let store = config.data_dir.join("store/apps");
    assert!(store.join("Jellyfin/docker-compose.yml").is_file());
    assert_eq!(std::fs::read(store.join("Jellyfin/icon.png")).unwrap(), ICON);
    assert!(!store.join("Jellyfin/screenshot-1.png").exists());
    assert!(!store.join("2FAuth/icon.png").exists());
    assert_eq!(config.store_icon("Jellyfin"), store.join("Jellyfin/icon.png"));
    let stored = read_app(&config, "2FAuth").unwrap();
    assert_eq!(stored.name, "2fauth");
    assert!(stored.icon.is_none());
    assert_eq!(read_app(&config, "Jellyfin").unwrap().icon.as_deref(), Some(ICON));
    assert_eq!(
        read_app(&config, "Nope").unwrap_err().code,
        cubeos_kit::ErrorCode::NotFound
    );
    // Nothing of the import's work is left behind.
    let left: Vec<_> = std::fs::read_dir(config.data_dir.join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["apps"]);

    // The `Apps` folder itself imports the same.
    let again = import(&config, "test", &source.join("Apps")).unwrap();
    assert_eq!(again.added, ["2FAuth", "Jellyfin"]);
    assert_eq!(again.total, 2);
}

#[test]
fn a_folder_of_compose_files_imports_by_file_stem_and_replaces_apps() {
    let (dir, config) = setup();
    let repo = dir.path().join("repo");
    repository(&repo);
    import(&config, "test", &repo).unwrap();

    let folder = dir.path().join("apps");
    let jellyfin = app_file("jellyfin/jellyfin:11", "Jellyfin", "Media", "Newer");
    write(&folder.join("Jellyfin.yml"), jellyfin.as_bytes());
    write(
        &folder.join("Jellyfin_Nvidia.yaml"),
        app_file("jellyfin/jellyfin:10", "Jellyfin (Nvidia)", "Media", "On a GPU").as_bytes(),
    );
    write(&folder.join("bad name!.yml"), jellyfin.as_bytes());
    write(&folder.join("notes.txt"), b"not an app\n");
    let huge = format!("{jellyfin}# {}\n", "x".repeat(MAX_COMPOSE_BYTES as usize));
    write(&folder.join("Huge.yml"), huge.as_bytes());

    let added = import(&config, "test", &folder).unwrap();
    assert_eq!(added.added, ["Jellyfin", "Jellyfin_Nvidia"]);
    assert_eq!(added.total, 3);
    let skipped = added.skipped.join("\n");
    assert!(skipped.contains("Huge.yml: larger than 256 KiB"), "{skipped}");
    assert!(
        skipped.contains("bad name!.yml: 'bad name!' is not a store id"),
        "{skipped}"
    );
    assert_eq!(added.skipped.len(), 2, "{skipped}");

    // Replaced whole: the new copy, and no icon since it has none.
    let stored = read_app(&config, "Jellyfin").unwrap();
    assert_eq!(stored.compose, jellyfin);
    assert!(stored.icon.is_none());
    assert_eq!(read_app(&config, "Jellyfin_Nvidia").unwrap().name, "jellyfin-nvidia");

    let refused = import(&config, "test", Path::new("relative/dir")).unwrap_err();
    assert!(refused.message.contains("absolute"), "{}", refused.message);
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(import(&config, "test", &empty).unwrap_err().message.contains("no apps"));
}

/// A gzipped tar of `entries` (path, contents) at `path`, each path written into
/// the header as it is (`tar::Builder` refuses the hostile ones).
fn tar_gz(path: &Path, entries: &[(&str, &[u8])]) {
    let file = std::fs::File::create(path).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append(&header, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

#[test]
fn a_tar_gz_of_a_repository_imports_its_apps_and_icons() {
    let (dir, config) = setup();
    let archive = dir.path().join("store.tar.gz");
    let navidrome = app_file("deluan/navidrome:0.61.2", "Navidrome", "Media", "Music");
    tar_gz(
        &archive,
        &[
            (
                "CasaOS-AppStore-main/Apps/Navidrome/docker-compose.yml",
                navidrome.as_bytes(),
            ),
            ("CasaOS-AppStore-main/Apps/Navidrome/icon.png", ICON),
            ("CasaOS-AppStore-main/Apps/Navidrome/screenshot-1.jpg", b"jpeg"),
            ("CasaOS-AppStore-main/README.md", b"# store"),
        ],
    );
    let added = import(&config, "test", &archive).unwrap();
    assert_eq!(added.added, ["Navidrome"]);
    assert!(added.skipped.is_empty(), "{:?}", added.skipped);
    let stored = read_app(&config, "Navidrome").unwrap();
    assert_eq!(stored.compose, navidrome);
    assert_eq!(stored.icon.as_deref(), Some(ICON));
    let left: Vec<_> = std::fs::read_dir(config.data_dir.join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["apps"]);

    // A plain tar reads the same; another file is no archive.
    let plain = dir.path().join("store.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&plain).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(navidrome.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "Music.yml", navidrome.as_bytes()).unwrap();
    tar.finish().unwrap();
    assert_eq!(import(&config, "test", &plain).unwrap().added, ["Music"]);
    let other = dir.path().join("store.zip");
    std::fs::write(&other, b"PK").unwrap();
    assert!(
        import(&config, "test", &other)
            .unwrap_err()
            .message
            .contains("not a folder")
    );
}

#[test]
fn an_archive_entry_leaving_the_archive_refuses_the_archive() {
    let (dir, config) = setup();
    let good = app_file("deluan/navidrome:0.61.2", "Navidrome", "Media", "Music");
    for hostile in ["../evil.yml", "Apps/../../evil.yml", "/tmp/cubeos-store-test-evil.yml"] {
        let archive = dir.path().join("hostile.tgz");
        tar_gz(
            &archive,
            &[
                ("Apps/Good/docker-compose.yml", good.as_bytes()),
                (hostile, good.as_bytes()),
            ],
        );
        let refused = import(&config, "test", &archive).unwrap_err();
        assert_eq!(refused.code, cubeos_kit::ErrorCode::BadRequest);
        assert!(
            refused.message.contains("stay inside the archive"),
            "{}",
            refused.message
        );
    }
    assert!(!dir.path().join("evil.yml").exists());
    assert!(!config.data_dir.join("evil.yml").exists());
    assert!(!config.data_dir.join("store/evil.yml").exists());
    assert!(!Path::new("/tmp/cubeos-store-test-evil.yml").exists());
    assert!(stored_ids(&config).is_empty());
}

#[test]
fn store_ids_admit_no_path_tricks() {
    let (_dir, config) = setup();
    for good in ["Jellyfin", "2FAuth", "Jellyfin_Nvidia", "Alist-Sync", "a.b"] {
        assert!(cubeos_contract::validate::is_store_id(good), "{good}");
    }
    for bad in ["", ".", "..", ".hidden", "a/b", "../x", "a b", "é", &"x".repeat(65)] {
        assert!(!cubeos_contract::validate::is_store_id(bad), "{bad}");
    }
    assert_eq!(
        app_icon_path(&config, "jellyfin"),
        Some(config.data_dir.join("apps/jellyfin/appconfig/icon.png"))
    );
    assert_eq!(app_icon_path(&config, "../x"), None);
}

#[test]
fn the_index_is_searched_by_every_word_and_filtered_by_category() {
    let (dir, config) = setup();
    let folder = dir.path().join("apps");
    for (id, image, title, category, tagline) in [
        (
            "Jellyfin",
            "jellyfin/jellyfin:10",
            "Jellyfin",
            "Media",
            "Your media server",
        ),
        ("Plex", "plexinc/pms-docker:1", "plex", "Media", "Stream your films"),
        (
            "Vaultwarden",
            "vaultwarden/server:1",
            "Vaultwarden",
            "Utilities",
            "Passwords",
        ),
        ("Gitea", "gitea/gitea:1", "Gitea", "Developer", "Git with a cup of tea"),
    ] {
        write(
            &folder.join(format!("{id}.yml")),
            app_file(image, title, category, tagline).as_bytes(),
        );
    }
    import(&config, "test", &folder).unwrap();
    let index = load_index(&config, "test");
    let ids = |listing: &StoreListing| listing.apps.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
    let list = |query: Option<&str>, category: Option<&str>| {
        search(
            &index,
            &StoreList {
                query: query.map(str::to_owned),
                category: category.map(str::to_owned),
            },
        )
        .unwrap()
    };

    let all = list(None, None);
    // By title, whatever its case.
    assert_eq!(ids(&all), ["Gitea", "Jellyfin", "Plex", "Vaultwarden"]);
    assert_eq!(all.total, 4);
    assert_eq!(all.categories, ["developer", "media", "utilities"]);
    let jellyfin = &all.apps[1];
    assert_eq!(jellyfin.name, "jellyfin");
    assert_eq!(jellyfin.tagline, "Your media server");
    assert_eq!(jellyfin.images, ["jellyfin/jellyfin:10"]);
    assert!(jellyfin.refusals.is_empty() && jellyfin.missing_images.is_empty());

    assert_eq!(ids(&list(Some("JELLY"), None)), ["Jellyfin"]);
    assert_eq!(ids(&list(Some("  your   SERVER "), None)), ["Jellyfin"]);
    assert_eq!(ids(&list(Some("your"), None)), ["Jellyfin", "Plex"]);
    assert_eq!(ids(&list(Some("app testing"), Some("Media"))), ["Jellyfin", "Plex"]);
    assert_eq!(ids(&list(Some("tea"), Some("media"))), Vec::<String>::new());
    assert_eq!(ids(&list(None, Some("UTILITIES"))), ["Vaultwarden"]);
    let none = list(Some("nothing-like-this"), None);
    assert!(none.apps.is_empty());
    assert_eq!((none.total, none.categories.len()), (4, 3));
    let long = StoreList {
        query: Some("x".repeat(MAX_QUERY_CHARS + 1)),
        category: None,
    };
    assert!(search(&index, &long).is_err());
}
