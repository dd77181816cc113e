//! The registry's retained app states (`cubeos/state/apps/<name>`), mirrored in a
//! service: what it reads instead of asking the registry every time.
//!
//! Each service keeps what it needs of an [`AppRecord`] (the whole record, or a
//! projection of it), so that a state message is parsed in one place, as the
//! contract's type, and a removal (an empty retained payload) means the same
//! everywhere. A mirror may lag the store by one message; callers that must be
//! exact ask the registry.

use std::collections::BTreeMap;

use cubeos_contract::models::AppRecord;
use cubeos_contract::topics;

/// Every app's `T`, kept from its retained state.
pub struct AppMirror<T = AppRecord> {
    keep: fn(AppRecord) -> T,
    apps: std::sync::Mutex<BTreeMap<String, T>>,
}

impl AppMirror<AppRecord> {
    /// A mirror of whole records.
    pub fn records() -> Self {
        AppMirror::new(|record| record)
    }
}

impl<T: Clone> AppMirror<T> {
    /// A mirror keeping `keep(record)` of every app.
    pub fn new(keep: fn(AppRecord) -> T) -> Self {
        AppMirror {
            keep,
            apps: Default::default(),
        }
    }

    /// The filter to subscribe to.
    pub fn filter() -> String {
        topics::all_app_states()
    }

    /// Folds one message in: the app's entry before and after (`None` after: the
    /// app is gone). `None` when the message is not an app's state, or not one
    /// this contract can read (the entry stays as it was).
    pub fn observe(&self, topic: &str, payload: &[u8]) -> Option<(Option<T>, Option<T>)> {
        let name = topics::app_of_state(topic)?;
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        if payload.is_empty() {
            return Some((apps.remove(name), None));
        }
        let record: AppRecord = serde_json::from_slice(payload).ok()?;
        let now = (self.keep)(record);
        Some((apps.insert(name.to_owned(), now.clone()), Some(now)))
    }

    /// One app's entry.
    pub fn get(&self, name: &str) -> Option<T> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Reads every entry at once.
    pub fn read<R>(&self, f: impl FnOnce(&BTreeMap<String, T>) -> R) -> R {
        f(&self.apps.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Changes an app's entry ahead of the state message that will confirm it,
    /// creating it with `new` when the app is not mirrored yet.
    pub fn upsert<R>(&self, name: &str, new: impl FnOnce() -> T, f: impl FnOnce(&mut T) -> R) -> R {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        f(apps.entry(name.to_owned()).or_insert_with(new))
    }

    /// Changes an app's entry if there is one.
    pub fn update<R>(&self, name: &str, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner()).get_mut(name).map(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, port: i64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": 1, "name": name, "display_name": "", "description": "", "type": "user",
            "category": "other", "source": "custom", "store_id": null, "compose_path": "",
            "data_path": "", "enabled": true, "tor_enabled": false, "vpn_enabled": false,
            "icon_url": "", "version": "", "homepage": "", "created_at": "", "updated_at": "",
            "ports": [{ "id": 1, "app_id": 1, "port": port, "protocol": "tcp", "description": "",
                        "is_primary": true, "created_at": "" }],
            "fqdns": []
        }))
        .unwrap()
    }

    #[test]
    fn states_fold_in_and_an_empty_payload_removes_the_app() {
        let mirror = AppMirror::new(|r| r.ports.iter().map(|p| p.port).collect::<Vec<_>>());
        let topic = topics::app_state("web");
        assert_eq!(
            mirror.observe(&topic, &record("web", 6100)),
            Some((None, Some(vec![6100])))
        );
        assert_eq!(
            mirror.observe(&topic, &record("web", 6101)),
            Some((Some(vec![6100]), Some(vec![6101])))
        );
        // Not an app's state, or not readable: nothing changes.
        assert_eq!(mirror.observe(&topics::app_status("web"), b"{}"), None);
        assert_eq!(mirror.observe(&topic, b"{\"name\": 3}"), None);
        assert_eq!(mirror.get("web"), Some(vec![6101]));
        mirror.upsert("web", Vec::new, |ports| ports.push(6102));
        assert_eq!(mirror.update("nope", |ports| ports.len()), None);
        assert_eq!(mirror.observe(&topic, b""), Some((Some(vec![6101, 6102]), None)));
        assert!(mirror.read(|apps| apps.is_empty()));
    }
}
