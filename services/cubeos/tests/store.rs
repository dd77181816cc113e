//! The offline app store from the command line: `cubeos store add` of the CasaOS
//! corpus, then listing and searching it against the box's Docker, and a preview
//! and an install from the store over the bus.

use std::path::Path;

use serde_json::{Value, json};

mod support;

use support::run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_casaos_store_imports_lists_searches_and_marks_missing_images() {
    let corpus = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/casaos-appstore/apps"
    ));
    if !cubeos_tests::skip_unless("store", corpus.is_dir(), "the CasaOS corpus is missing") {
        return;
    }
    let Some(_docker) = cubeos_tests::require_swarm("store").await else {
        return;
    };
    let up = support::Up::start(&[]);
    let text = |out: &std::process::Output| {
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let out = run(up.cli().args(["store", "add"]).arg(corpus));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let added: usize = stdout
        .strip_prefix("added ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {stdout}"));
    assert!(added >= 100, "{stdout}");

    let out = run(up.cli().args(["store", "ls", "--json"]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let listing: Value = serde_json::from_str(&stdout).unwrap();
    let apps = listing["apps"].as_array().unwrap();
    assert!(apps.len() >= 100, "{}", apps.len());
    assert_eq!(listing["total"], apps.len());
    assert!(
        listing["categories"].as_array().unwrap().len() > 3,
        "{}",
        listing["categories"]
    );
    // Nothing can be pulled here, and the corpus's images were never loaded.
    for app in apps {
        assert!(!app["images"].as_array().unwrap().is_empty(), "{app}");
        assert_eq!(app["missing_images"], app["images"], "{app}");
    }

    let out = run(up.cli().args(["store", "search", "jellyfin"]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("ID "), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("Jellyfin_Nvidia ") && l.contains("missing images")),
        "{stdout}"
    );
    assert!(!stdout.contains("Navidrome"), "{stdout}");
    let out = run(up.cli().args(["store", "ls", "--category", "media"]));
    assert!(text(&out).0.contains("Navidrome"), "{:?}", text(&out));

    // Over the bus, as the dashboard asks: a store app's preview and entry, and
    // its install refused at once for its image.
    let creds = cubeos_broker::Credentials::load(&up.data.join("broker-credentials.json")).unwrap();
    let mut config = cubeos_kit::Config::default();
    config.broker.address = format!("127.0.0.1:{}", up.mqtt).parse().unwrap();
    let bus = cubeos_kit::Bus::connect(cubeos_kit::BusOptions::new(
        &config,
        "store-test",
        &creds.username,
        &creds.password,
    ))
    .await
    .unwrap();
    let preview = bus
        .request("orchestrator", "preview", &json!({"store": "Navidrome"}))
        .await
        .unwrap();
    assert_eq!(preview["name"], "navidrome");
    assert_eq!(preview["services"], json!(["navidrome"]));
    assert_eq!(preview["ports"][0]["target"], 4533);
    assert!(
        preview["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "ND_LOGLEVEL" && f["default"] == "info" && f["description"] == "Log level."),
        "{preview}"
    );
    assert_eq!(preview["images"][0]["present"], false);
    assert!(
        preview["image_hint"].as_str().unwrap().contains("cubeos image load"),
        "{preview}"
    );
    let entry = bus
        .request("orchestrator", "store.get", &json!({"id": "Navidrome"}))
        .await
        .unwrap();
    assert!(
        entry["compose"].as_str().unwrap().contains("deluan/navidrome"),
        "{entry}"
    );
    assert!(!entry["description"].as_str().unwrap().is_empty(), "{entry}");
    let refused = bus
        .request("orchestrator", "install", &json!({"store": "Navidrome"}))
        .await
        .unwrap_err();
    assert_eq!(refused.code, cubeos_kit::ErrorCode::NotFound, "{refused:?}");
    assert!(refused.message.contains("cubeos image load"), "{}", refused.message);
    let both = bus
        .request(
            "orchestrator",
            "preview",
            &json!({"store": "Navidrome", "compose": "services: {}"}),
        )
        .await
        .unwrap_err();
    assert_eq!(both.code, cubeos_kit::ErrorCode::BadRequest);
    let unknown = bus
        .request("orchestrator", "store.get", &json!({"id": "../etc"}))
        .await
        .unwrap_err();
    assert_eq!(unknown.code, cubeos_kit::ErrorCode::BadRequest);
    bus.shutdown().await;
}
