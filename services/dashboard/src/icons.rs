//! App icons: `/icons/store/<id>` from the box's store copy and `/icons/app/<name>`
//! from an installed app's config dir. Where there is none, a placeholder is drawn
//! from the name, so the page never shows a broken image (nor logs a 404).

use std::path::PathBuf;

use bytes::Bytes;
use cubeos_contract::validate;
use cubeos_kit::{Config, files};

use crate::http::Response;

/// What `/icons/<kind>/<name>` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Icon<'a> {
    Store(&'a str),
    App(&'a str),
}

impl<'a> Icon<'a> {
    /// Parses the part of the path after `/icons/`; names are checked so that no
    /// request reaches outside the dirs icons live in.
    pub fn parse(rest: &'a str) -> Option<Icon<'a>> {
        match rest.split_once('/')? {
            ("store", id) if validate::is_store_id(id) => Some(Icon::Store(id)),
            ("app", name) if validate::name("name", name).is_ok() => Some(Icon::App(name)),
            _ => None,
        }
    }

    /// The file it would be.
    pub fn file(&self, config: &Config) -> PathBuf {
        match self {
            Icon::Store(id) => config.store_icon(id),
            Icon::App(name) => config.app_icon(name),
        }
    }

    fn name(&self) -> &str {
        match self {
            Icon::Store(n) | Icon::App(n) => n,
        }
    }
}

/// The answer to `/icons/<rest>`: the PNG, or a placeholder.
pub fn response(config: &Config, rest: &str) -> Response {
    let Some(icon) = Icon::parse(rest) else {
        return Response::status(404, "no such icon");
    };
    let response = match files::read_icon(&icon.file(config)) {
        Some(bytes) => Response::ok("image/png", Bytes::from(bytes)),
        None => Response::ok("image/svg+xml", Bytes::from(placeholder(icon.name()))),
    };
    // A grid of 200 cards would revalidate every icon on each redraw: icons change
    // only when an app is installed again, so a few minutes' staleness is fine.
    response.header("Cache-Control", "max-age=300").tagged()
}

/// A rounded square in a colour picked from the name, with its first letter.
pub fn placeholder(name: &str) -> String {
    let hue = name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 360;
    let letter = name
        .chars()
        .find(char::is_ascii_alphanumeric)
        .map_or('?', |c| c.to_ascii_uppercase());
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 64 64\"><rect width=\"64\" height=\"64\" \
         rx=\"14\" fill=\"hsl({hue},55%,42%)\"/><text x=\"32\" y=\"43\" font-family=\"sans-serif\" \
         font-size=\"30\" font-weight=\"700\" text-anchor=\"middle\" fill=\"#fff\">{letter}</text></svg>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_leave_the_icon_dirs() {
        assert_eq!(Icon::parse("store/Jellyfin"), Some(Icon::Store("Jellyfin")));
        assert_eq!(Icon::parse("app/my-app"), Some(Icon::App("my-app")));
        for bad in [
            "store/..",
            "store/../x",
            "app/a/b",
            "app/",
            "other/x",
            "store/.hidden",
            "app/a%2f",
        ] {
            assert_eq!(Icon::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_missing_icon_is_a_placeholder_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let r = response(&config, "app/nothing-here");
        assert_eq!(r.status, 200);
        assert!(std::str::from_utf8(&r.body).unwrap().contains(">N</text>"));
        let icon = config.store_icon("Thing");
        std::fs::create_dir_all(icon.parent().unwrap()).unwrap();
        std::fs::write(&icon, b"\x89PNG\r\n\x1a\nrest").unwrap();
        let r = response(&config, "store/Thing");
        assert_eq!(r.headers[0].1, "image/png");
    }

    #[test]
    fn the_placeholder_colour_is_the_names_own() {
        assert_eq!(placeholder("jellyfin"), placeholder("jellyfin"));
        assert_ne!(placeholder("jellyfin"), placeholder("gitea"));
    }
}
