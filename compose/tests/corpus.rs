//! Every file of the CasaOS app store (`../shared/casaos-appstore/apps/`) translates,
//! or is refused with a specific reason; a few real apps are checked field by field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{EndpointPortConfigPublishModeEnum, MountType, ServiceSpec};
use cubeos_compose::{Context, Outcome, PortKey, SystemVars, Translation, Vars, name_from_file, translate};
use cubeos_contract::models::{AppSource, Protocol};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/casaos-appstore/apps")
}

fn ctx(name: &str) -> Context {
    let system = SystemVars {
        timezone: "Europe/Oslo".into(),
        puid: 1000,
        pgid: 1000,
    };
    Context::new(
        name,
        format!("/cubeos/apps/{name}/appdata").into(),
        "/cubeos/shared".into(),
        &system,
        &Vars::new(),
    )
}

fn load(file: &str) -> Translation {
    let path = corpus_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    translate(&text, &ctx(&name_from_file(&path))).unwrap()
}

#[test]
fn every_store_app_translates_or_is_refused_for_a_reason() {
    let dir = corpus_dir();
    if !cubeos_tests_skip(&dir) {
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 100, "corpus has {} files", files.len());
    let mut deployable = 0;
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let t = translate(&text, &ctx(&name_from_file(file)))
            .unwrap_or_else(|e| panic!("{} failed to translate: {e}", file.display()));
        assert!(!t.services.is_empty());
        assert_eq!(t.app.source, AppSource::Casaos, "{}", file.display());
        assert!(t.app.store_id.is_some(), "{}", file.display());
        for spec in &t.services {
            assert_eq!(spec.labels.as_ref().unwrap()["cubeos.managed"], "true");
            assert!(spec.name.as_ref().unwrap().starts_with(&format!("{}_", t.app.name)));
        }
        if t.deployable() {
            deployable += 1;
        } else {
            for row in t.report.iter().filter(|r| r.outcome == Outcome::Unsupported) {
                *reasons.entry(row.key.clone()).or_default() += 1;
            }
            refused.insert(
                file.file_name().unwrap().to_string_lossy().into_owned(),
                t.refusals.clone(),
            );
        }
    }
    println!(
        "corpus: {} files, {deployable} deployable, {} refused without force",
        files.len(),
        refused.len()
    );
    println!("refusals by key: {reasons:?}");
    for (file, why) in &refused {
        println!("  refused {file}: {}", why.join("; "));
    }
    // Each refusal is one of the reasons that truly need a person's consent.
    for why in refused.values().flatten() {
        let known = [
            "host-path",
            "privileged",
            "devices",
            "runtime",
            "network_mode",
            "pid",
            "deploy.resources.reservations.devices",
        ];
        assert!(
            known
                .iter()
                .any(|k| why.contains(&format!(".{k}:")) || why.starts_with(&format!("{k}:"))),
            "unexpected refusal: {why}"
        );
    }
    // Most refusals are NVIDIA-only apps (GPU runtimes and reservations) that
    // cannot work on this class of box anyway; the rest need host access.
    assert!(
        refused.len() * 5 <= files.len(),
        "more than a fifth refused: {}",
        refused.len()
    );
}

/// The corpus lives outside the repo; it is part of the project's shared folder.
fn cubeos_tests_skip(dir: &Path) -> bool {
    let present = dir.is_dir();
    if !present {
        assert!(
            std::env::var("CUBEOS_TEST_STRICT").as_deref() != Ok("1"),
            "corpus missing at {}",
            dir.display()
        );
        println!("SKIP corpus: {} is missing", dir.display());
    }
    present
}

fn mounts(spec: &ServiceSpec) -> Vec<(String, String, MountType)> {
    let c = spec.task_template.as_ref().unwrap().container_spec.as_ref().unwrap();
    c.mounts
        .iter()
        .flatten()
        .map(|m| {
            (
                m.source.clone().unwrap_or_default(),
                m.target.clone().unwrap(),
                m.typ.unwrap(),
            )
        })
        .collect()
}

fn env(spec: &ServiceSpec) -> Vec<String> {
    spec.task_template
        .as_ref()
        .unwrap()
        .container_spec
        .as_ref()
        .unwrap()
        .env
        .clone()
        .unwrap_or_default()
}

#[test]
fn navidrome_field_by_field() {
    if !cubeos_tests_skip(&corpus_dir()) {
        return;
    }
    let t = load("Navidrome.yml");
    assert!(t.deployable(), "{:?}", t.refusals);
    assert_eq!(t.app.name, "navidrome");
    assert_eq!(t.app.display_name, "Navidrome");
    assert_eq!(t.app.category, "media");
    assert_eq!(t.app.version, "0.61.2");
    assert_eq!(t.app.homepage, "https://www.navidrome.org");
    assert_eq!(t.app.store_id.as_deref(), Some("org.icewhale.navidrome"));
    assert!(t.app.icon_url.ends_with("Navidrome/icon.svg"));
    assert!(t.app.description.starts_with("Navidrome is an open source"));
    assert_eq!(t.metadata.tagline, "Music Collection and Streaming Server");
    assert_eq!(t.metadata.architectures, ["amd64", "arm64", "arm"]);

    let spec = &t.services[0];
    assert_eq!(spec.name.as_deref(), Some("navidrome_navidrome"));
    let c = spec.task_template.as_ref().unwrap().container_spec.as_ref().unwrap();
    assert_eq!(c.image.as_deref(), Some("deluan/navidrome:0.61.2"));
    let env = env(spec);
    assert!(env.contains(&"TZ=Europe/Oslo".to_owned()), "{env:?}");
    assert!(env.contains(&"ND_SCANSCHEDULE=1h".to_owned()));
    assert!(env.contains(&"ND_BASEURL=".to_owned()));
    assert_eq!(
        mounts(spec),
        [
            (
                "/cubeos/apps/navidrome/appdata/data".into(),
                "/data".into(),
                MountType::BIND
            ),
            ("/cubeos/shared/Media/Music".into(), "/music".into(), MountType::BIND)
        ]
    );
    assert_eq!(
        t.bind_dirs,
        [
            PathBuf::from("/cubeos/apps/navidrome/appdata/data"),
            PathBuf::from("/cubeos/shared/Media/Music")
        ]
    );
    let ports = spec.endpoint_spec.as_ref().unwrap().ports.as_ref().unwrap();
    assert_eq!(
        (ports[0].target_port, ports[0].published_port),
        (Some(4533), Some(4533))
    );
    assert_eq!(ports[0].publish_mode, Some(EndpointPortConfigPublishModeEnum::HOST));
    assert_eq!(t.ports[0].description, "WebUI Port for Navidrome");
    let web = t.web_ui.as_ref().unwrap();
    assert_eq!((web.scheme.as_str(), web.port, web.path.as_str()), ("http", 4533, "/"));
    let reservations = spec
        .task_template
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap()
        .reservations
        .as_ref()
        .unwrap();
    assert_eq!(reservations.memory_bytes, Some(1024 << 20));
    let rows: Vec<(&str, Outcome)> = t.report.iter().map(|r| (r.key.as_str(), r.outcome)).collect();
    assert!(rows.contains(&("container_name", Outcome::Ignored)));
    assert!(rows.contains(&("restart", Outcome::Mapped)));
    assert!(rows.contains(&("network_mode", Outcome::Mapped)));
    assert_eq!(
        t.networks.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["navidrome_default"]
    );
}

#[test]
fn the_allocation_hook_replaces_published_ports_and_moves_the_web_ui() {
    if !cubeos_tests_skip(&corpus_dir()) {
        return;
    }
    let path = corpus_dir().join("Navidrome.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut c = ctx("navidrome");
    c.allocations.insert(
        PortKey {
            service: "navidrome".into(),
            target: 4533,
            protocol: Protocol::Tcp,
        },
        6105,
    );
    let t = translate(&text, &c).unwrap();
    let ports = t.services[0].endpoint_spec.as_ref().unwrap().ports.as_ref().unwrap();
    assert_eq!(ports[0].published_port, Some(6105));
    assert_eq!(t.ports[0].file_published, Some(4533));
    assert_eq!(t.web_ui.unwrap().port, 6105);
}

#[test]
fn refused_apps_name_their_reason_and_force_deploys_them() {
    if !cubeos_tests_skip(&corpus_dir()) {
        return;
    }
    let t = load("Portainer.yml");
    assert!(!t.deployable());
    assert!(
        t.refusals.iter().any(|r| r.contains("/var/run/docker.sock")),
        "{:?}",
        t.refusals
    );
    assert!(t.check(false).unwrap_err().to_string().contains("docker.sock"));
    assert!(t.check(true).is_ok());
    // The socket is mounted as written, not created.
    assert!(!t.bind_dirs.iter().any(|d| d.starts_with("/var/run")));
}

#[test]
fn unifi_inline_configs_become_swarm_configs() {
    if !cubeos_tests_skip(&corpus_dir()) {
        return;
    }
    let t = load("Unifi-Network-Application.yml");
    assert!(t.deployable(), "{:?}", t.refusals);
    assert_eq!(t.services.len(), 2);
    assert_eq!(t.configs.len(), 1);
    let config = &t.configs[0];
    assert_eq!(config.name.as_deref(), Some("unifi-network-application_init-mongo.js"));
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD
        .decode(config.data.as_ref().unwrap())
        .unwrap();
    assert!(String::from_utf8(data).unwrap().contains("createUser"));
    let db = t
        .services
        .iter()
        .find(|s| s.name.as_deref() == Some("unifi-network-application_unifi-db"))
        .unwrap();
    let refs = db
        .task_template
        .as_ref()
        .unwrap()
        .container_spec
        .as_ref()
        .unwrap()
        .configs
        .as_ref()
        .unwrap();
    assert_eq!(refs[0].config_name, config.name);
    assert_eq!(
        refs[0].file.as_ref().unwrap().name.as_deref(),
        Some("/docker-entrypoint-initdb.d/init-mongo.js")
    );
    assert!(env(db).iter().any(|e| e == "PGID=1000"), "{:?}", env(db));
}
