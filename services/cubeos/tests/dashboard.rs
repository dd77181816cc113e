//! Issue 14: the dashboard, in a real browser (Debian's Chromium driven by
//! playwright-core, `tests/js/dashboard.mjs`), against a real `cubeos up` on real
//! Swarm: first-boot setup, installs from a pasted file and from an imported store
//! folder, an app's page through its link, stop / start / remove, a readonly user,
//! wrong passwords and lockout, reconnecting across a restart, 200 apps, and an app
//! whose image is absent. The screenshots' directory is printed.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{Up, own_range, run};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A busybox web server publishing port 80, pasted into the dashboard.
fn pasted_compose() -> String {
    format!(
        "services:\n  web:\n    image: {}\n    command: [\"sh\", \"-c\", \"echo 'hello from pasted' > /www/index.html && exec httpd -f -p 80 -h /www\"]\n    ports: ['80']\n    volumes: ['./www:/www']\n",
        cubeos_tests::TEST_IMAGE
    )
}

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/js")
}

/// Node with playwright-core and axe-core, and Chromium (else SKIP, or fail when strict).
fn browser_available(test: &str) -> bool {
    cubeos_tests::require(test, "node")
        && cubeos_tests::skip_unless(
            test,
            js_dir().join("node_modules/playwright-core").is_dir() && js_dir().join("node_modules/axe-core").is_dir(),
            "playwright-core and axe-core are not installed (npm ci --prefix tests/js)",
        )
        && cubeos_tests::skip_unless(test, Path::new(CHROMIUM).exists(), "chromium is not installed")
}

/// An empty directory for a test's screenshots, named in its output.
fn screenshots(name: &str) -> PathBuf {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    println!("screenshots: {}", shots.display());
    shots
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    let test = "dashboard";
    if !browser_available(test) {
        return;
    }
    let Some(_docker) = cubeos_tests::require_swarm(test).await else {
        return;
    };
    cubeos_tests::ensure_test_image();
    let max_failures = "3";
    let range = own_range();
    let port = cubeos_tests::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut up = Up::start(&[
        ("CUBEOS__PORTS__USER", range.as_str()),
        ("CUBEOS__DASHBOARD__LISTEN", listen.as_str()),
        ("CUBEOS__AUTH__MAX_FAILURES", max_failures),
        ("CUBEOS__ORCHESTRATOR__DEPLOY_CORE_APPS", "false"),
    ]);

    // The store: CasaOS's own files, and a store repository's layout of two apps.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/casaos-appstore/apps");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store");
    for store in [&corpus, &fixtures] {
        let out = run(up.cli().args(["store", "add"]).arg(store));
        assert!(
            out.status.success(),
            "store add {}: {}",
            store.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let shots = screenshots("dashboard-screenshots");

    let mut browser = support::Guard(
        Command::new("node")
            .arg(js_dir().join("dashboard.mjs"))
            .current_dir(js_dir())
            .env("DASH_URL", format!("http://{listen}"))
            .env("SHOTS", &shots)
            .env("PASTE_COMPOSE", pasted_compose())
            .env("STORE_APP", "Hello")
            .env("ABSENT_APP", "Absent")
            .env("MAX_FAILURES", max_failures)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node starts"),
    );
    let mut stdin = browser.0.stdin.take().unwrap();
    let stdout = BufReader::new(browser.0.stdout.take().unwrap());
    let stderr = browser.0.stderr.take().unwrap();
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut passed = false;
    // The first run's log lines, kept across the restart.
    let mut before_restart = Vec::new();
    for line in stdout.lines().map_while(Result::ok) {
        println!("{line}");
        match line.as_str() {
            "RESTART" => {
                support::sigterm(&up.process.0);
                support::wait_exit(&mut up.process.0, std::time::Duration::from_secs(30));
                before_restart = up.logs.lines();
                up.restart();
                writeln!(stdin, "restarted").unwrap();
            }
            "PASS" => passed = true,
            _ => {}
        }
    }
    let status = browser.0.wait().unwrap();
    let errors = errors.join().unwrap();
    assert!(
        passed && status.success(),
        "the browser test failed ({status}):\n{errors}\nscreenshots so far: {}",
        shots.display()
    );
    // A figure, not an assertion: what the box holds after a browser's whole session.
    println!("cubeos up after the browser session: {}", up.memory());
    let removed = run(up.cli().args(["app", "rm", "hello"]));
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    let shots_taken = std::fs::read_dir(&shots).unwrap().count();
    assert!(shots_taken >= 16, "{shots_taken} screenshots in {}", shots.display());
    // Ordinary use writes no ERROR or WARN line; the reader's two forged commands
    // are not ordinary, and each is logged.
    let lines = [before_restart, up.logs.lines()].concat();
    let refused = |l: &&String| l.contains("command refused at the gate") && l.contains("user=reader");
    assert_eq!(
        lines.iter().filter(refused).count(),
        2,
        "the forged commands are logged"
    );
    let bad: Vec<&String> = lines
        .iter()
        .filter(|l| (l.contains("ERROR") || l.contains("WARN")) && !refused(l))
        .collect();
    assert!(bad.is_empty(), "error or warning lines:\n{bad:#?}");
}

/// Part 2: on a box whose sessions last 12 s, the page renews its token before it
/// expires and keeps working past the first token's end; after logout the token
/// signs in no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renews_its_session_and_logout_ends_it() {
    if !browser_available("dashboard_session") {
        return;
    }
    let port = cubeos_tests::free_port();
    let listen = format!("127.0.0.1:{port}");
    let _up = Up::start(&[
        ("CUBEOS__DASHBOARD__LISTEN", listen.as_str()),
        ("CUBEOS__AUTH__SESSION_TTL", "12s"),
        ("CUBEOS__ORCHESTRATOR__DEPLOY_CORE_APPS", "false"),
    ]);
    run_mode(
        "session",
        &format!("http://{listen}"),
        "dashboard-session-screenshots",
        &[],
    );
}

/// Runs `dashboard.mjs` in one of its short modes, which must print PASS.
fn run_mode(mode: &str, url: &str, shots: &str, env: &[(&str, &str)]) {
    let shots = screenshots(shots);
    let out = Command::new("node")
        .arg(js_dir().join("dashboard.mjs"))
        .current_dir(js_dir())
        .env("MODE", mode)
        .env("DASH_URL", url)
        .env("SHOTS", &shots)
        .envs(env.iter().copied())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("PASS"),
        "the browser test ({mode}) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Part 1: through the box's reverse proxy (real nginx, its server blocks written
/// by the proxy service) at `http://cubeos.cube`, the page loads and its bus, at
/// `/mqtt` on the same origin, signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_through_the_reverse_proxy() {
    let test = "dashboard_proxy";
    if !browser_available(test) || !cubeos_tests::require(test, "nginx") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nginx = cubeos_tests::servers::Nginx::start(dir.path());
    let mut config = cubeos_kit::Config::default();
    nginx.configure(&mut config);
    let n = &config.proxy.nginx;
    let list = |argv: &[String]| format!("{argv:?}");
    let file = dir.path().join("cubeos.toml");
    std::fs::write(
        &file,
        format!(
            "[proxy]\nproxy = \"nginx\"\n[proxy.nginx]\nconf_dir = {:?}\nlisten = {:?}\ntest_command = {}\nreload_command = {}\n",
            n.conf_dir.display().to_string(),
            n.listen,
            list(&n.test_command),
            list(&n.reload_command),
        ),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", cubeos_tests::free_port());
    let file = file.display().to_string();
    let _up = Up::start(&[
        ("CUBEOS_CONFIG", file.as_str()),
        ("CUBEOS__DASHBOARD__LISTEN", listen.as_str()),
        ("CUBEOS__ORCHESTRATOR__DEPLOY_CORE_APPS", "false"),
    ]);
    run_mode(
        "proxy",
        &format!("http://cubeos.cube:{}", nginx.port),
        "dashboard-proxy-screenshots",
        &[("RESOLVE", "cubeos.cube=127.0.0.1")],
    );
}
