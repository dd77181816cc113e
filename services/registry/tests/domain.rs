//! The registry's domain functions on a real SQLite file, without a broker.

use std::collections::BTreeMap;
use std::path::Path;

use cubeos_contract::models::{AppType, Protocol};
use cubeos_kit::config::StoreConfig;
use cubeos_registry::error::RegistryError;
use cubeos_registry::{Store, apps, fqdns, ports, profiles, settings};
use serde_json::json;

async fn store(dir: &Path) -> Store {
    Store::open(&dir.join("cubeos.db"), &StoreConfig::default())
        .await
        .expect("store opens")
}

fn new_app(value: serde_json::Value) -> apps::NewApp {
    serde_json::from_value(value).expect("valid args")
}

#[tokio::test]
async fn migrations_seed_profiles_state_and_network_config() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let state = settings::all(&s, settings::Table::SystemState).await.unwrap();
    assert_eq!(state["schema_version"], "2");
    assert_eq!(state["domain"], "cubeos.cube");
    assert_eq!(state["gateway_ip"], "10.42.24.1");
    let names: Vec<String> = profiles::list(&s)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.profile.name)
        .collect();
    assert_eq!(names, ["full", "minimal", "offline"]);
    let mode: String = sqlx::query_scalar("SELECT mode FROM network_config WHERE id = 1")
        .fetch_one(&s.reader)
        .await
        .unwrap();
    assert_eq!(mode, "offline");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&s.writer)
        .await
        .unwrap();
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&s.writer)
        .await
        .unwrap();
    assert_eq!((fk, journal.as_str()), (1, "wal"));
    s.close().await;
    // Reopening applies nothing twice.
    let s = store(dir.path()).await;
    assert_eq!(profiles::list(&s).await.unwrap().len(), 3);
}

#[tokio::test]
async fn app_lifecycle_with_ports_and_fqdns() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let created = apps::create(
        &s,
        dir.path(),
        new_app(json!({
            "name": "jellyfin", "display_name": "Jellyfin", "type": "user", "category": "media",
            "ports": [{"port": 6101, "is_primary": true}, {"port": 6101, "protocol": "udp"}],
            "fqdns": [{"fqdn": "Jellyfin.CubeOS.cube", "backend_port": 6101}]
        })),
    )
    .await
    .unwrap();
    assert_eq!(created.app.app_type, AppType::User);
    assert_eq!(created.ports.len(), 2);
    assert_eq!(created.fqdns[0].fqdn, "jellyfin.cubeos.cube");
    assert_eq!(created.fqdns[0].subdomain, "jellyfin");
    assert!(
        created
            .app
            .compose_path
            .ends_with("apps/jellyfin/appconfig/docker-compose.yml")
    );

    let again = apps::create(&s, dir.path(), new_app(json!({"name": "jellyfin"}))).await;
    assert!(matches!(again, Err(RegistryError::AlreadyExists { .. })));

    let updated: apps::AppChanges =
        serde_json::from_value(json!({"name": "jellyfin", "enabled": false, "version": "10.9"})).unwrap();
    let updated = apps::update(&s, updated).await.unwrap();
    assert!(!updated.app.enabled);
    assert_eq!(
        updated.app.display_name, "Jellyfin",
        "untouched fields keep their values"
    );

    let disabled = apps::list(
        &s,
        &apps::AppFilter {
            enabled: Some(false),
            app_type: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(disabled.len(), 1);
    let system = apps::list(
        &s,
        &apps::AppFilter {
            app_type: Some(AppType::System),
            enabled: None,
        },
    )
    .await
    .unwrap();
    assert!(system.is_empty());
}

#[tokio::test]
async fn delete_cascades_to_ports_fqdns_health_and_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let app = apps::create(
        &s,
        dir.path(),
        new_app(json!({"name": "gone", "ports": [{"port": 6120}], "fqdns": [{"fqdn": "gone.cubeos.cube", "backend_port": 6120}]})),
    )
    .await
    .unwrap();
    sqlx::query("INSERT INTO app_health (app_id, check_endpoint) VALUES (?, '/health')")
        .bind(app.app.id)
        .execute(&s.writer)
        .await
        .unwrap();
    let set = profiles::ProfileApps {
        name: "minimal".into(),
        apps: BTreeMap::from([("gone".into(), true)]),
    };
    profiles::set_apps(&s, set).await.unwrap();

    let touched = apps::delete(&s, "gone").await.unwrap();
    assert_eq!(touched, ["minimal"]);
    for table in ["port_allocations", "fqdns", "app_health", "profile_apps", "apps"] {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&s.reader)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} still has rows");
    }
    assert!(matches!(
        apps::delete(&s, "gone").await,
        Err(RegistryError::NotFound { .. })
    ));
}

#[tokio::test]
async fn ports_conflict_names_the_holder_and_freed_ports_are_reusable() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    for name in ["a", "b"] {
        apps::create(&s, dir.path(), new_app(json!({"name": name})))
            .await
            .unwrap();
    }
    let reserve = |app: &str, port: i64| -> ports::Reservation {
        serde_json::from_value(json!({"app": app, "port": port})).unwrap()
    };
    ports::reserve(&s, reserve("a", 6150)).await.unwrap();
    match ports::reserve(&s, reserve("b", 6150)).await {
        Err(RegistryError::PortHeld { port, app, .. }) => assert_eq!((port, app.as_str()), (6150, "a")),
        other => panic!("expected PortHeld, got {other:?}"),
    }
    // Same number, other protocol: a different reservation.
    let udp: ports::Reservation = serde_json::from_value(json!({"app": "b", "port": 6150, "protocol": "udp"})).unwrap();
    assert_eq!(ports::reserve(&s, udp).await.unwrap().protocol, Protocol::Udp);

    let release: ports::Release = serde_json::from_value(json!({"app": "a", "port": 6150})).unwrap();
    assert_eq!(ports::release(&s, release.clone()).await.unwrap().len(), 1);
    assert!(matches!(
        ports::release(&s, release).await,
        Err(RegistryError::NotFound { .. })
    ));
    ports::reserve(&s, reserve("b", 6150))
        .await
        .expect("freed port reusable");
    let held = ports::list(&s, &ports::PortFilter { app: Some("b".into()) })
        .await
        .unwrap();
    assert_eq!(held.len(), 2);
    assert!(held.iter().all(|h| h.app == "b"));
}

#[tokio::test]
async fn validation_rejects_before_touching_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    for args in [
        json!({"name": "../etc"}),
        json!({"name": "ok", "ports": [{"port": 70000}]}),
        json!({"name": "ok", "ports": [{"port": 0}]}),
        json!({"name": "ok", "compose_path": "relative/path"}),
        json!({"name": "ok", "data_path": "/cubeos/../etc"}),
        json!({"name": "ok", "fqdns": [{"fqdn": "nodots", "backend_port": 80}]}),
        json!({"name": "ok", "display_name": "   "}),
        json!({"name": "ok", "description": "x".repeat(apps::MAX_DESCRIPTION + 1)}),
    ] {
        let result = apps::create(&s, dir.path(), new_app(args.clone())).await;
        assert!(matches!(result, Err(RegistryError::Invalid(_))), "{args}: {result:?}");
    }
    // A port conflict inside one create rolls the whole create back.
    let dup = apps::create(
        &s,
        dir.path(),
        new_app(json!({"name": "dup", "ports": [{"port": 6160}, {"port": 6160}]})),
    )
    .await;
    assert!(matches!(dup, Err(RegistryError::PortHeld { .. })));
    assert!(apps::list(&s, &Default::default()).await.unwrap().is_empty());
    // Wrong types never reach a domain function: serde refuses them.
    assert!(serde_json::from_value::<apps::NewApp>(json!({"name": "x", "type": "root"})).is_err());
    assert!(serde_json::from_value::<apps::NewApp>(json!({"name": "x", "bogus": 1})).is_err());
}

#[tokio::test]
async fn fqdns_are_unique_across_apps() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    for name in ["one", "two"] {
        apps::create(&s, dir.path(), new_app(json!({"name": name})))
            .await
            .unwrap();
    }
    let add = |app: &str| -> fqdns::NewFqdn {
        serde_json::from_value(json!({"app": app, "fqdn": "shared.cubeos.cube", "backend_port": 6170})).unwrap()
    };
    fqdns::add(&s, add("one")).await.unwrap();
    assert!(matches!(fqdns::add(&s, add("two")).await, Err(RegistryError::FqdnHeld { app, .. }) if app == "one"));
    let (row, app) = fqdns::remove(&s, "SHARED.cubeos.cube").await.unwrap();
    assert_eq!((row.backend_port, app.as_str()), (6170, "one"));
    fqdns::add(&s, add("two")).await.unwrap();
}

#[tokio::test]
async fn profiles_one_active_and_system_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let activate = |name: &str| -> profiles::ProfileChanges {
        serde_json::from_value(json!({"name": name, "is_active": true})).unwrap()
    };
    profiles::update(&s, activate("full")).await.unwrap();
    let touched = profiles::update(&s, activate("offline")).await.unwrap();
    let names: Vec<&str> = touched.iter().map(|r| r.profile.name.as_str()).collect();
    assert_eq!(
        names,
        ["offline", "full"],
        "the previously active profile is reported as changed"
    );
    let active: Vec<String> = profiles::list(&s)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.profile.is_active)
        .map(|p| p.profile.name)
        .collect();
    assert_eq!(active, ["offline"]);

    assert!(matches!(
        profiles::delete(&s, "full").await,
        Err(RegistryError::Protected(_))
    ));
    let custom = profiles::NewProfile {
        name: "travel".into(),
        display_name: Some("Travel".into()),
        description: None,
    };
    profiles::create(&s, custom.clone()).await.unwrap();
    assert!(matches!(
        profiles::create(&s, custom).await,
        Err(RegistryError::AlreadyExists { .. })
    ));
    let set = profiles::ProfileApps {
        name: "travel".into(),
        apps: BTreeMap::from([("ghost".into(), true)]),
    };
    assert!(matches!(
        profiles::set_apps(&s, set).await,
        Err(RegistryError::NotFound { .. })
    ));
    profiles::delete(&s, "travel").await.unwrap();
}

#[tokio::test]
async fn settings_get_set_and_protected_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    use settings::Table;
    settings::set(&s, Table::SystemState, "domain", "home.cube")
        .await
        .unwrap();
    assert_eq!(
        settings::get(&s, Table::SystemState, "domain").await.unwrap().value,
        "home.cube"
    );
    assert!(matches!(
        settings::set(&s, Table::SystemState, "schema_version", "9").await,
        Err(RegistryError::Protected(_))
    ));
    assert!(matches!(
        settings::set(&s, Table::Preferences, "Bad Key", "x").await,
        Err(RegistryError::Invalid(_))
    ));
    settings::set(&s, Table::Preferences, "theme", "dark").await.unwrap();
    assert_eq!(settings::all(&s, Table::Preferences).await.unwrap()["theme"], "dark");
    settings::delete(&s, Table::Preferences, "theme").await.unwrap();
    assert!(matches!(
        settings::get(&s, Table::Preferences, "theme").await,
        Err(RegistryError::NotFound { .. })
    ));
}
