//! The page's files, embedded in the binary from `web/`, each compressed once on
//! first use and kept.

use std::io::Write;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::http::Response;

/// One embedded file.
pub struct Asset {
    /// Its URL path.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    gzipped: OnceLock<Bytes>,
}

impl Asset {
    const fn new(path: &'static str, content_type: &'static str, body: &'static [u8]) -> Asset {
        Asset {
            path,
            content_type,
            body,
            gzipped: OnceLock::new(),
        }
    }

    /// The body gzip-compressed (best compression: it is done once).
    pub fn gzipped(&self) -> &Bytes {
        self.gzipped.get_or_init(|| {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing to a Vec cannot fail.
            let _ = encoder.write_all(self.body);
            Bytes::from(encoder.finish().unwrap_or_default())
        })
    }
}

macro_rules! web {
    ($($path:literal => $file:literal, $type:literal;)*) => {
        /// Every file of the page.
        pub static ASSETS: [Asset; [$($path),*].len()] =
            [$(Asset::new($path, $type, include_bytes!(concat!("../web/", $file)))),*];
    };
}

web! {
    "/" => "index.html", "text/html; charset=utf-8";
    "/style.css" => "style.css", "text/css; charset=utf-8";
    "/app.js" => "app.js", "text/javascript; charset=utf-8";
    "/bus.js" => "bus.js", "text/javascript; charset=utf-8";
    "/ui.js" => "ui.js", "text/javascript; charset=utf-8";
    "/views/apps.js" => "views/apps.js", "text/javascript; charset=utf-8";
    "/views/store.js" => "views/store.js", "text/javascript; charset=utf-8";
    "/views/system.js" => "views/system.js", "text/javascript; charset=utf-8";
    "/favicon.svg" => "favicon.svg", "image/svg+xml";
    "/vendor/mqtt.min.js" => "vendor/mqtt.min.js", "text/javascript; charset=utf-8";
}

/// The file at `path`; `/index.html` is `/`.
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

/// A 200 with the file, compressed when the browser takes gzip. Browsers revalidate
/// every time (`no-cache`), so a new binary's files are seen at once.
pub fn response(asset: &Asset, gzip: bool) -> Response {
    let response = if gzip {
        Response::ok(asset.content_type, asset.gzipped().clone()).header("Content-Encoding", "gzip")
    } else {
        Response::ok(asset.content_type, Bytes::from_static(asset.body))
    };
    response
        .header("Vary", "Accept-Encoding")
        .header("Cache-Control", "no-cache")
        .tagged()
}

/// What the page's first load costs: every file it loads before it can show the
/// sign-in screen, compressed as served.
pub fn first_load_bytes() -> usize {
    ASSETS
        .iter()
        .filter(|a| a.path != "/favicon.svg")
        .map(|a| a.gzipped().len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_compresses_and_the_first_load_is_under_150_kb() {
        for asset in &ASSETS {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&asset.gzipped()[..]), &mut plain).unwrap();
            assert_eq!(plain, asset.body, "{}", asset.path);
        }
        let total = first_load_bytes();
        println!("first load: {total} bytes compressed");
        assert!(total <= 150 * 1000, "first load is {total} bytes compressed");
    }

    #[test]
    fn the_index_is_found_by_both_names_and_nothing_else_is_invented() {
        assert_eq!(find("/").map(|a| a.path), Some("/"));
        assert_eq!(find("/index.html").map(|a| a.path), Some("/"));
        assert!(find("/../Cargo.toml").is_none());
        assert!(find("/web/app.js").is_none());
    }
}
