//! CasaOS metadata (`x-casaos` at the top and per service) mapped onto the app
//! model. Plain compose files have none; their metadata comes from the file's name
//! and the main service's image.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::syntax::scalar;

/// What the app store says about an app, and what CubeOS derives from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metadata {
    pub display_name: String,
    pub description: String,
    pub tagline: String,
    pub category: String,
    pub icon_url: String,
    pub version: String,
    pub homepage: String,
    pub developer: String,
    pub architectures: Vec<String>,
    /// The store's id (`x-casaos.id`, else `store_app_id`); `None` for plain compose.
    pub store_id: Option<String>,
    /// The service that carries the web UI.
    pub main_service: String,
    /// `scheme`, `port_map` and `index` of the web UI, before port allocation.
    pub web_ui: Option<WebUiHint>,
    /// Container port / path / variable -> description, per service.
    pub port_descriptions: BTreeMap<String, String>,
    pub volume_descriptions: BTreeMap<String, String>,
    pub env_descriptions: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebUiHint {
    pub scheme: String,
    /// The published port CasaOS would open (a string in the store: may be empty).
    pub port: Option<u16>,
    pub path: String,
}

/// Text in the store is a string or a map of locales; English wins, then any.
pub fn localized(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(map)) => ["en_us", "en_US", "en_GB", "en"]
            .iter()
            .find_map(|k| map.get(*k).and_then(scalar))
            .or_else(|| map.values().find_map(scalar))
            .unwrap_or_default(),
        Some(other) => scalar(other).unwrap_or_default(),
        None => String::new(),
    }
}

/// The tag of an image reference: `deluan/navidrome:0.61.2` -> `0.61.2`,
/// `host:5000/img` -> `latest`, digests dropped.
pub fn image_tag(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag.to_owned(),
        _ => "latest".to_owned(),
    }
}

/// Reads the metadata. `services` is the file's `services` mapping (service order
/// preserved), `fallback_name` the app's name.
pub fn metadata(top: &Map<String, Value>, services: &Map<String, Value>, fallback_name: &str) -> Metadata {
    let x = top.get("x-casaos").and_then(Value::as_object);
    let get = |k: &str| x.and_then(|x| x.get(k));
    let main_service = get("main")
        .and_then(scalar)
        .filter(|m| services.contains_key(m))
        .or_else(|| services.keys().next().cloned())
        .unwrap_or_default();
    let image = services
        .get(&main_service)
        .and_then(|s| s.get("image"))
        .and_then(scalar)
        .unwrap_or_default();
    let title = localized(get("title"));
    let mut meta = Metadata {
        display_name: if title.is_empty() {
            fallback_name.to_owned()
        } else {
            title
        },
        description: localized(get("description")),
        tagline: localized(get("tagline")),
        category: localized(get("category")).to_ascii_lowercase(),
        icon_url: get("icon").and_then(scalar).unwrap_or_default(),
        version: if image.is_empty() {
            get("version").and_then(scalar).unwrap_or_default()
        } else {
            image_tag(&image)
        },
        homepage: get("website")
            .or_else(|| get("project_url"))
            .and_then(scalar)
            .unwrap_or_default(),
        developer: get("developer")
            .or_else(|| get("author"))
            .map(|v| localized(Some(v)))
            .unwrap_or_default(),
        architectures: get("architectures")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(scalar).collect())
            .unwrap_or_default(),
        store_id: get("id")
            .or_else(|| get("store_app_id"))
            .and_then(scalar)
            .filter(|s| !s.is_empty()),
        main_service,
        web_ui: None,
        ..Default::default()
    };
    if meta.category.is_empty() {
        meta.category = "other".into();
    }
    if x.is_some() {
        meta.web_ui = Some(WebUiHint {
            scheme: get("scheme")
                .and_then(scalar)
                .filter(|s| s == "http" || s == "https")
                .unwrap_or_else(|| "http".into()),
            port: get("port_map").and_then(scalar).and_then(|p| p.trim().parse().ok()),
            path: get("index")
                .and_then(scalar)
                .map(|p| if p.starts_with('/') { p } else { format!("/{p}") })
                .unwrap_or_else(|| "/".into()),
        });
    }
    for (name, service) in services {
        let Some(sx) = service.get("x-casaos").and_then(Value::as_object) else {
            continue;
        };
        for (section, field, out) in [
            ("ports", "container", &mut meta.port_descriptions),
            ("volumes", "container", &mut meta.volume_descriptions),
            ("envs", "container", &mut meta.env_descriptions),
        ] {
            for item in sx.get(section).and_then(Value::as_array).into_iter().flatten() {
                if let Some(key) = item.get(field).and_then(scalar) {
                    out.insert(format!("{name}:{key}"), localized(item.get("description")));
                }
            }
        }
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn locales_fall_back() {
        assert_eq!(localized(Some(&json!({"zh_CN": "x", "en_US": "Music"}))), "Music");
        assert_eq!(localized(Some(&json!({"en_us": "lower"}))), "lower");
        assert_eq!(localized(Some(&json!({"de_DE": "Musik"}))), "Musik");
        assert_eq!(localized(Some(&json!("plain"))), "plain");
        assert_eq!(localized(None), "");
    }

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("deluan/navidrome:0.61.2"), "0.61.2");
        assert_eq!(image_tag("nginx"), "latest");
        assert_eq!(image_tag("registry.local:5000/team/app"), "latest");
        assert_eq!(image_tag("registry.local:5000/team/app:1.2@sha256:abc"), "1.2");
    }
}
