//! The contract file and the README's command tables say what the types say.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cubeos_contract::{api, schema};

fn repo_file(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

#[test]
fn the_checked_in_contract_file_is_what_the_types_generate() {
    let path = repo_file("cubeos-contract.json");
    let generated = schema::file_text();
    if std::env::var("CUBEOS_WRITE_CONTRACT").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is stale: run `CUBEOS_WRITE_CONTRACT=1 cargo test -p cubeos-contract --test contract_file` and commit it",
        path.display()
    );
}

#[test]
fn every_command_has_its_arguments_and_reply_in_the_file() {
    let document = schema::document();
    for spec in api::all() {
        let entry = &document["commands"][spec.service][spec.action];
        assert!(
            entry["args"].is_object() && entry["reply"].is_object(),
            "{spec:?}: {entry}"
        );
        assert_eq!(entry["need"], spec.need.as_str(), "{spec:?}");
    }
    assert!(document["states"]["cubeos/state/proxy"]["payload"].is_object());
    assert!(document["events"]["cubeos/events/auth/revoked"]["payload"].is_object());
}

/// The actions of every `| action | args | reply |` table in the README, per
/// service (from the section heading's `cubeos/cmd/<service>/<action>`).
fn readme_actions(readme: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut service: Option<String> = None;
    let mut in_table = false;
    for line in readme.lines() {
        if line.starts_with('#') {
            service = line
                .split("`cubeos/cmd/")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .map(str::to_owned);
            in_table = false;
            continue;
        }
        if line.starts_with("| action |") {
            in_table = service.is_some();
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let (true, Some(service)) = (in_table, &service) else {
            continue;
        };
        let first = line.split('|').nth(1).unwrap_or_default();
        for name in first.split('/').map(str::trim).filter(|n| n.starts_with('`')) {
            out.entry(service.clone())
                .or_default()
                .insert(name.trim_matches('`').to_owned());
        }
    }
    out
}

#[test]
fn the_readme_command_tables_list_exactly_the_contract_commands() {
    let readme = std::fs::read_to_string(repo_file("../README.md")).unwrap();
    let documented = readme_actions(&readme);
    let mut typed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for spec in api::all() {
        typed
            .entry(spec.service.to_owned())
            .or_default()
            .insert(spec.action.to_owned());
    }
    for (service, actions) in &typed {
        let listed = documented.get(service).cloned().unwrap_or_default();
        let missing: Vec<_> = actions.difference(&listed).collect();
        let unknown: Vec<_> = listed.difference(actions).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "README, {service}: not documented {missing:?}; not in the contract {unknown:?}"
        );
    }
}
