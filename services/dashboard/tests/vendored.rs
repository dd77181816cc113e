//! The one file the page takes from elsewhere, MQTT.js's browser build, is the one
//! the tests lock (`tests/js/package-lock.json`): after `npm ci --prefix tests/js`
//! a stale copy fails here.

use std::path::Path;

#[test]
fn the_vendored_mqtt_js_is_the_locked_version() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let installed = root.join("../../tests/js/node_modules/mqtt/dist/mqtt.min.js");
    if !cubeos_tests::skip_unless(
        "vendored_mqtt_js",
        installed.is_file(),
        "MQTT.js is not installed (npm ci --prefix tests/js)",
    ) {
        return;
    }
    let vendored = std::fs::read(root.join("web/vendor/mqtt.min.js")).unwrap();
    assert!(
        vendored == std::fs::read(&installed).unwrap(),
        "services/dashboard/web/vendor/mqtt.min.js is stale: copy {} over it",
        installed.display()
    );
}
