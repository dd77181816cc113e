//! The offline app store and the install preview, answered by the orchestrator.
//!
//! A store is a local copy of a CasaOS app store (its repository's layout,
//! `Apps/<Name>/docker-compose.yml` with `icon.png`, or a plain folder of compose
//! files) imported into the data dir by `store.add`; `store.list` lists and searches
//! it, `store.get` gives one app's compose file. `preview` says what installing a
//! compose file would do — the compatibility report, the images the box lacks, the
//! env fields a person may fill in — for a pasted file, a store app or an installed
//! app, without changing anything.

use serde::{Deserialize, Serialize};

use super::commands;
use super::orchestrator::ImageState;
use crate::topics::service::ORCHESTRATOR;

commands! { ORCHESTRATOR;
    StoreAdd = "store.add", Admin => StoreAdded;
    StoreList = "store.list", Readonly => StoreListing;
    StoreGet = "store.get", Readonly => StoreEntry;
    Preview = "preview", Readonly => AppPreview;
}

/// `store.add`: imports a store copy on this box: a directory or a `.tar` /
/// `.tar.gz` archive of one. Apps already in the store are replaced.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreAdd {
    /// Absolute.
    pub path: String,
}

/// The reply to `store.add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoreAdded {
    /// Store ids imported.
    pub added: Vec<String>,
    /// `<file>: <why>` for each compose file that was not.
    pub skipped: Vec<String>,
    /// Apps in the store now.
    pub total: usize,
}

/// `store.list`: the store's apps, optionally searched and filtered.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreList {
    /// Words that must all appear in the id, title, tagline, description or category
    /// (case-insensitive).
    pub query: Option<String>,
    pub category: Option<String>,
}

/// One app of the store, as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoreApp {
    /// The store's name for it (its folder or file name).
    pub id: String,
    /// The app name an install would give it.
    pub name: String,
    pub title: String,
    pub tagline: String,
    pub category: String,
    /// The store copy has an icon for it (served by the dashboard).
    pub icon: bool,
    pub images: Vec<String>,
    /// Images of `images` the box does not have: an install would be refused.
    /// Empty when Docker did not answer (unknown, not present).
    pub missing_images: Vec<String>,
    /// Why it would be refused without force (empty: deployable).
    pub refusals: Vec<String>,
}

/// The reply to `store.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoreListing {
    pub apps: Vec<StoreApp>,
    /// Every category in the store, sorted.
    pub categories: Vec<String>,
    /// Apps in the store, before the search.
    pub total: usize,
}

/// `store.get`: one store app with its compose file.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreGet {
    pub id: String,
}

/// The reply to `store.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoreEntry {
    #[serde(flatten)]
    pub app: StoreApp,
    pub description: String,
    pub compose: String,
}

/// `preview`: what installing would do, for exactly one of a compose file's text,
/// a store app or an installed app. Nothing is changed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preview {
    pub compose: Option<String>,
    /// A store id.
    pub store: Option<String>,
    /// An installed app's name: its compatibility report.
    pub app: Option<String>,
    /// The app name to give a new install (default: the file's).
    pub name: Option<String>,
}

/// How CubeOS takes one compose key Swarm does not take as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CompatRow {
    /// The compose service, or empty for a top-level key.
    pub service: String,
    pub key: String,
    /// `mapped`, `ignored` or `unsupported` (refused without force).
    pub outcome: String,
    pub reason: String,
}

/// A published port an install would give the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PreviewPort {
    pub service: String,
    pub target: u16,
    /// What the file asks for on the host, if anything.
    pub published: Option<u16>,
    pub protocol: String,
    pub description: String,
}

/// An environment variable of the file a person may set at install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EnvField {
    pub name: String,
    /// The file's value (after CubeOS's own variables).
    pub default: String,
    /// From the file's `x-casaos` descriptions, when it has them.
    pub description: String,
}

/// The reply to `preview`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AppPreview {
    pub name: String,
    pub title: String,
    pub description: String,
    pub category: String,
    pub services: Vec<String>,
    pub ports: Vec<PreviewPort>,
    pub env: Vec<EnvField>,
    pub report: Vec<CompatRow>,
    /// Why it is refused without force (empty: deployable).
    pub refusals: Vec<String>,
    pub images: Vec<ImageState>,
    /// When an image is missing: how to load it onto the box.
    pub image_hint: Option<String>,
}
