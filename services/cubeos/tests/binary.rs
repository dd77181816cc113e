//! The `cubeos` binary as people and init systems use it: `cubeos up` with no
//! configuration, client commands from a second process, SIGTERM, and SIGKILL of a
//! registry process in the middle of writes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cubeos_tests::{System, free_port, wait_for_registry};

use serde_json::{Value, json};

mod support;

use support::{Guard, bin, cubeos, own_range, run, sigterm, wait_exit, wait_for_lines};

#[test]
fn up_serves_client_commands_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mqtt, ws) = (free_port(), free_port());
    let mut up = Guard(
        cubeos(&data, mqtt, ws)
            .arg("up")
            .stderr(Stdio::piped())
            .spawn()
            .expect("up starts"),
    );
    // The registry, the port allocator, the orchestrator and the proxy.
    let lines = wait_for_lines(&mut up.0, "service ready", 4);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("broker listening") || l.contains("gate listening"))
            .count(),
        2,
        "{lines:?}"
    );

    // A fresh system lists the core apps the orchestrator registered (not
    // deployed: orchestrator.deploy_core_apps is off).
    let out = run(cubeos(&data, mqtt, ws).args(["app", "ls"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NAME         TYPE      ENABLED  PORTS"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("pihole") && l.contains("6001/tcp") && l.contains("pihole.cubeos.cube")),
        "{text}"
    );

    // Add an app over the bus, the way any client would.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let creds = cubeos_broker::Credentials::load(&data.join("broker-credentials.json")).unwrap();
        let mut config = cubeos_kit::Config::default();
        config.broker.address = format!("127.0.0.1:{mqtt}").parse().unwrap();
        let bus = cubeos_kit::Bus::connect(cubeos_kit::BusOptions::new(
            &config,
            "test",
            &creds.username,
            &creds.password,
        ))
        .await
        .unwrap();
        let args = json!({"name": "wiki", "display_name": "Wiki", "ports": [{"port": 6130}],
                          "fqdns": [{"fqdn": "wiki.cubeos.cube", "backend_port": 6130}]});
        bus.request("registry", "app.create", &args).await.unwrap();
        bus.shutdown().await;
    });

    let out = run(cubeos(&data, mqtt, ws).args(["app", "ls"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("wiki") && l.contains("6130/tcp")),
        "{text}"
    );
    let out = run(cubeos(&data, mqtt, ws).args(["app", "ls", "--json"]));
    let apps: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json prints JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let wiki = apps["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "wiki")
        .unwrap();
    assert_eq!(wiki["fqdns"][0]["fqdn"], "wiki.cubeos.cube");
    let out = run(cubeos(&data, mqtt, ws).args(["app", "show", "wiki"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("wiki.cubeos.cube -> :6130"));

    let out = run(cubeos(&data, mqtt, ws).args(["app", "show", "missing"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found: no app named 'missing'"));

    let out = run(cubeos(&data, mqtt, ws).args(["state", "get", "domain"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cubeos.cube");
    let out = run(cubeos(&data, mqtt, ws).args(["state", "set", "domain", "home.cube"]));
    assert!(out.status.success());
    let out = run(cubeos(&data, mqtt, ws).args(["state", "get", "--json"]));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["domain"], "home.cube");
    let out = run(cubeos(&data, mqtt, ws).args(["state", "set", "schema_version", "7"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("conflict"));

    // Ports through the allocator, from the command line.
    let out = run(cubeos(&data, mqtt, ws).args(["port", "allocate", "wiki", "--preferred", "6130"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("preferred port 6130/tcp is taken (app 'wiki')"),
        "{out:?}"
    );
    // Which port it gets depends on what else this machine runs: any free one of
    // the user range.
    let got: u16 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wiki: ")?.strip_suffix("/tcp")?.parse().ok())
        .unwrap_or_else(|| panic!("no allocation in {out:?}"));
    assert!((6100..=6999).contains(&got) && got != 6130, "{got}");
    let out = run(cubeos(&data, mqtt, ws).args(["port", "check", &got.to_string()]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{got}/tcp is taken (user range):\n  app wiki")),
        "{out:?}"
    );
    let out = run(cubeos(&data, mqtt, ws).args(["port", "check", "6101", "--udp"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("6101/udp is free"),
        "{out:?}"
    );
    let out = run(cubeos(&data, mqtt, ws).args(["port", "check", "70000"]));
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("bad_request"));
    let out = run(cubeos(&data, mqtt, ws).args(["port", "ls"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            // wiki's two, and whatever else this machine holds in the range.
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() == 5
                    && cols[..3] == ["user", "tcp", "6100-6999"]
                    && cols[3].parse::<u32>().is_ok_and(|n| n >= 2)
            }),
        "{text}"
    );
    let out = run(cubeos(&data, mqtt, ws).args(["port", "release", "wiki", &got.to_string()]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("released {got}/tcp")
    );

    sigterm(&up.0);
    let status = wait_exit(&mut up.0, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");

    // With nothing running, a client says so and fails.
    let out = run(cubeos(&data, mqtt, ws)
        .args(["app", "ls"])
        .env("CUBEOS__BUS__REQUEST_TIMEOUT", "1s"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `cubeos up` running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_of_the_registry() {
    let system = System::broker_only().await;
    let data = system.config.data_dir.clone();
    let (mqtt, ws) = (system.mqtt_port(), system.gate_port());
    let spawn_registry = || {
        Guard(
            cubeos(&data, mqtt, ws)
                .args(["run", "registry"])
                .stderr(Stdio::null())
                .spawn()
                .expect("registry starts"),
        )
    };
    let mut registry = spawn_registry();
    let client = system.client("writer").await;
    wait_for_registry(&client).await;

    // Four writers; the registry is killed once 200 writes are acknowledged, while
    // others are still in flight.
    const KILL_AFTER: usize = 200;
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let (client, acked, stop) = (client.clone(), Arc::clone(&acked), Arc::clone(&stop));
        writers.spawn(async move {
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let name = format!("w{w}-{i}");
                let args = json!({"name": name, "ports": [{"port": 10_000 + w * 5000 + i}]});
                match client
                    .request_with_timeout("registry", "app.create", &args, Duration::from_secs(2))
                    .await
                {
                    Ok(_) => acked.lock().unwrap().push(name),
                    Err(_) => return,
                }
            }
        });
    }
    while acked.lock().unwrap().len() < KILL_AFTER {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    registry.0.kill().expect("SIGKILL");
    registry.0.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    while writers.join_next().await.is_some() {}
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= KILL_AFTER);

    let _registry = spawn_registry();
    wait_for_registry(&client).await;
    let listed = client.request("registry", "app.list", &json!({})).await.unwrap();
    let names: std::collections::HashSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !names.contains(n.as_str())).collect();
    assert!(lost.is_empty(), "{} acknowledged writes lost: {lost:?}", lost.len());
    // Every app that exists is whole: its port came with it.
    for app in listed.as_array().unwrap() {
        assert_eq!(app["ports"].as_array().unwrap().len(), 1, "{app}");
    }
}

#[test]
fn preview_shows_a_store_app_and_refuses_what_needs_force() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/casaos-appstore/apps");
    if !cubeos_tests::skip_unless("preview", corpus.is_dir(), "the CasaOS corpus is missing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let preview = |args: &[&str]| {
        run(Command::new(bin())
            .arg("--data")
            .arg(dir.path())
            .args(["app", "preview"])
            .args(args))
    };

    let out = preview(&[corpus.join("Navidrome.yml").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Navidrome",
        "0.61.2",
        "4533/tcp",
        "navidrome_navidrome",
        "deployable",
        "http://<box>:4533/",
    ] {
        assert!(text.contains(needle), "no '{needle}' in:\n{text}");
    }

    let out = preview(&[corpus.join("Portainer.yml").to_str().unwrap(), "--json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("docker.sock"));
    let t: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["app"]["name"], "portainer");
    let out = preview(&[
        corpus.join("Portainer.yml").to_str().unwrap(),
        "--force",
        "--name",
        "dockerui",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("dockerui_portainer"));

    // From standard input, with a bad file: a typed error, no panic.
    let mut child = Command::new(bin())
        .args(["app", "preview", "-", "--name", "x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"services:\n  '../x':\n    image: y\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("services.../x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_installs_with_progress_and_manages_the_app() {
    let Some(_docker) = cubeos_tests::require_swarm("cli_install").await else {
        return;
    };
    cubeos_tests::ensure_test_image();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mqtt, ws) = (free_port(), free_port());
    let range = own_range();
    let with_range = |cmd: &mut Command| {
        cmd.env("CUBEOS__PORTS__USER", &range);
    };
    let mut up_cmd = cubeos(&data, mqtt, ws);
    with_range(&mut up_cmd);
    let mut up = Guard(up_cmd.arg("up").stderr(Stdio::piped()).spawn().expect("up starts"));
    wait_for_lines(&mut up.0, "service ready", 4);

    let compose = dir.path().join("hello.yml");
    std::fs::write(
        &compose,
        format!(
            "services:\n  web:\n    image: {}\n    command: [\"sh\", \"-c\", \"echo cli > /www/index.html && exec httpd -f -p 80 -h /www\"]\n    ports: ['80']\n    volumes: ['./www:/www']\n",
            cubeos_tests::TEST_IMAGE
        ),
    )
    .unwrap();
    let out = run(cubeos(&data, mqtt, ws).args(["app", "install"]).arg(&compose));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("[###") && text.contains("8/8 converge") && text.trim_end().ends_with("hello: installed"),
        "{text}"
    );

    let out = run(cubeos(&data, mqtt, ws).args(["app", "ls"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("hello") && l.contains("running 1/1") && l.contains("hello.cubeos.cube")),
        "{text}"
    );
    // `--no-wait` returns once Swarm is asked: the task serves on through Swarm's
    // stop grace period and the status says so (busybox httpd ignores SIGTERM),
    // then says stopped once the task is gone.
    let out = run(cubeos(&data, mqtt, ws).args(["app", "stop", "hello", "--no-wait"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello: stop done");
    let status_of = || {
        let out = run(cubeos(&data, mqtt, ws).args(["app", "status", "hello", "--json"]));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["status"].clone()
    };
    let status = status_of();
    assert_eq!(
        (&status["health"], &status["replicas"], &status["running"]),
        (&json!("stopping"), &json!("1/0"), &json!(true)),
        "{status}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_of()["health"] != "stopped" {
        assert!(Instant::now() < deadline, "still not stopped: {}", status_of());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(status_of()["replicas"], "0/0");

    // Without `--no-wait`, start returns once the app answers on its port and
    // stop once it no longer does: the gap between the command returning and
    // the port closing is none.
    let record = run(cubeos(&data, mqtt, ws).args(["app", "show", "hello", "--json"]));
    let port = serde_json::from_slice::<Value>(&record.stdout).unwrap()["ports"][0]["port"]
        .as_u64()
        .unwrap() as u16;
    let answers =
        || std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_ok();
    let out = run(cubeos(&data, mqtt, ws).args(["app", "start", "hello"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("2/2 converge: running 1/1") && text.trim_end().ends_with("hello: start done"),
        "{text}"
    );
    assert!(answers(), "start returned before the app answered on :{port}");
    let asked = Instant::now();
    let out = run(cubeos(&data, mqtt, ws).args(["app", "stop", "hello"]));
    let returned = asked.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("2/2 converge: stopped") && text.trim_end().ends_with("hello: stop done"),
        "{text}"
    );
    let still = Instant::now();
    while answers() {
        assert!(still.elapsed() < Duration::from_secs(30), "still answering");
        std::thread::sleep(Duration::from_millis(100));
    }
    let gap = still.elapsed();
    println!("app stop returned after {returned:?}; the port closed {gap:?} after that");
    assert!(
        gap < Duration::from_millis(500),
        "stop returned {gap:?} before the port closed"
    );
    assert_eq!(status_of()["health"], "stopped");
    let out = run(cubeos(&data, mqtt, ws).args(["app", "logs", "hello"]));
    assert!(out.status.success());
    let out = run(cubeos(&data, mqtt, ws).args(["app", "rm", "hello"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello: remove done");
    let out = run(cubeos(&data, mqtt, ws).args(["app", "install", "/nonexistent.yml"]));
    assert!(!out.status.success());
    sigterm(&up.0);
    assert!(wait_exit(&mut up.0, Duration::from_secs(15)).success());
}

/// SIGKILL of the orchestrator in the middle of installs: after a restart each app
/// is either fully installed or fully gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_orchestrator_mid_install_leaves_all_or_nothing() {
    let Some(docker) = cubeos_tests::require_swarm("sigkill_install").await else {
        return;
    };
    cubeos_tests::ensure_test_image();
    let range = own_range();
    let mut system = System::start_with(|c| c.ports.user = range.clone()).await;
    system.start_service("port-allocator").await;
    let data = system.config.data_dir.clone();
    let (mqtt, ws) = (system.mqtt_port(), system.gate_port());
    let spawn = || {
        Guard(
            cubeos(&data, mqtt, ws)
                .env("CUBEOS__PORTS__USER", &range)
                .args(["run", "orchestrator"])
                .stderr(Stdio::null())
                .spawn()
                .expect("orchestrator starts"),
        )
    };
    let mut orchestrator = spawn();
    let bus = system.client("t").await;
    let ready = async || {
        bus.request_with_timeout("orchestrator", "status", &json!({}), Duration::from_secs(1))
            .await
            .is_ok()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready().await {
        assert!(Instant::now() < deadline, "orchestrator did not come up");
    }
    let compose = |n: usize| {
        format!(
            "services:\n  web:\n    image: {}\n    command: [\"httpd\", \"-f\", \"-p\", \"80\"]\n    ports: ['80']\n    volumes: ['./d{n}:/d']\n",
            cubeos_tests::TEST_IMAGE
        )
    };
    // Three installs, killed at different points of their steps.
    let mut progress = bus
        .subscribe("cubeos/events/apps/+/progress", rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    for n in 0..3 {
        bus.request(
            "orchestrator",
            "install",
            &json!({ "compose": compose(n), "name": format!("kill{n}") }),
        )
        .await
        .unwrap();
    }
    // Kill once some install has got past registering.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), progress.recv())
            .await
            .unwrap()
            .unwrap();
        let event: Value = serde_json::from_slice(&msg.payload).unwrap();
        if event["step"].as_u64().unwrap_or(0) >= 4 || Instant::now() > deadline {
            break;
        }
    }
    orchestrator.0.kill().unwrap();
    orchestrator.0.wait().unwrap();

    let _orchestrator = spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready().await {
        assert!(Instant::now() < deadline, "orchestrator did not come back");
    }
    // Give the reconciler a pass.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in 0..3 {
        let name = format!("kill{n}");
        let row = bus.request("registry", "app.get", &json!({ "name": name })).await;
        let service = docker
            .inspect_service(
                &format!("{name}_web"),
                None::<bollard::query_parameters::InspectServiceOptions>,
            )
            .await;
        let dir = data.join("apps").join(&name);
        match row {
            Ok(app) => {
                // Fully installed: row, port, files, service, and no marker.
                assert_eq!(app["ports"].as_array().unwrap().len(), 1, "{app}");
                assert!(service.is_ok(), "{name}: row without service");
                assert!(dir.join("appconfig/docker-compose.yml").exists() && !dir.join(".installing").exists());
                let _ = bus.request("orchestrator", "remove", &json!({ "name": name })).await;
            }
            Err(_) => {
                // Fully gone: no service, no files, no ports.
                assert!(service.is_err(), "{name}: service without row");
                assert!(!dir.exists(), "{name}: files left");
            }
        }
    }
    let held = bus.request("registry", "port.list", &json!({})).await.unwrap();
    let left: Vec<&Value> = held
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["app"].as_str().unwrap().starts_with("kill"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Reads a child's stdout lines on a thread of their own.
fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Issue 11, part 5: `cubeos up` dies in the middle of an install. The CLI does
/// not wait forever: it waits for CubeOS to come back and reports the outcome,
/// here the rollback the restart made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_cut_off_by_a_crash_reports_its_rollback() {
    let Some(docker) = cubeos_tests::require_swarm("install_crash").await else {
        return;
    };
    cubeos_tests::ensure_test_image();
    let range = own_range();
    let mut up = support::Up::start(&[
        ("CUBEOS__PORTS__USER", range.as_str()),
        ("CUBEOS__ORCHESTRATOR__CONVERGE_TIMEOUT", "300s"),
    ]);
    let compose = up.dir.path().join("crashy.yml");
    std::fs::write(
        &compose,
        format!(
            "services:\n  web:\n    image: {}\n    command: ['/no/such/command']\n    ports: ['80']\n    volumes: ['./d:/d']\n",
            cubeos_tests::TEST_IMAGE
        ),
    )
    .unwrap();
    let mut install = up
        .cli()
        .args(["app", "install"])
        .arg(&compose)
        .args(["--wait", "90s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stdout_lines(&mut install);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("7/8 deploy")) {
        seen.push(
            lines
                .recv_timeout(Duration::from_secs(60))
                .expect("the install reaches its deploy step"),
        );
    }
    // SIGKILL: no goodbye, and the install's marker stays on disk.
    up.process.0.kill().unwrap();
    up.process.0.wait().unwrap();
    up.restart();
    let started = Instant::now();
    let out = install.wait_with_output().unwrap();
    let rest: Vec<String> = lines.try_iter().collect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(90));
    assert!(
        rest.iter().chain(&seen).any(|l| l.contains("lost contact with CubeOS")),
        "{seen:?} {rest:?}"
    );
    assert!(
        stderr
            .contains("error: unavailable: crashy: the install was interrupted by a restart of CubeOS and rolled back"),
        "{stderr}"
    );
    let out = run(up.cli().args(["app", "ls"]));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("crashy"));
    assert!(
        docker
            .inspect_service("crashy_web", None::<bollard::query_parameters::InspectServiceOptions>)
            .await
            .is_err()
    );
}

/// Issue 11, parts 7 and 8: `app preview` says which images the box lacks and
/// which host ports are taken; `image load` brings an image with a progress bar;
/// `install` says which port the app got and why; `image ls` lists what apps use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_checked_loaded_and_listed_from_the_cli() {
    let Some(_docker) = cubeos_tests::require_swarm("cli_images").await else {
        return;
    };
    cubeos_tests::ensure_test_image();
    let image = format!("cubeos-test/cli-offline-{}:2", std::process::id());
    let range = own_range();
    let up = support::Up::start(&[("CUBEOS__PORTS__USER", range.as_str())]);
    let archive = up.dir.path().join("image.tar");
    cubeos_tests::save_test_image_as(&image, &archive);
    // A host port the file asks for, held by someone else.
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let compose = up.dir.path().join("offline.yml");
    std::fs::write(
        &compose,
        format!(
            "services:\n  web:\n    image: {image}\n    command: ['sh', '-c', 'echo hi > /www/index.html && exec httpd -f -p 80 -h /www']\n    ports: ['{taken}:80']\n    volumes: ['./www:/www']\n"
        ),
    )
    .unwrap();
    let text = |out: &std::process::Output| {
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let out = run(up.cli().args(["app", "preview"]).arg(&compose));
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("images missing on this box: {image}")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{taken} (taken by")), "{stdout}");
    assert!(
        stderr.starts_with(&format!("error: not_found: image {image} is not on this box")),
        "{stderr}"
    );
    let out = run(up.cli().args(["app", "install"]).arg(&compose));
    assert!(
        text(&out).1.contains("cubeos image load <file.tar>"),
        "{:?}",
        text(&out)
    );

    let out = run(up.cli().args(["image", "load"]).arg(&archive));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("] ") && stdout.contains(" load: ") && stdout.contains("MiB"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with(&format!("loaded {image}")), "{stdout}");

    let out = run(up.cli().args(["app", "preview"]).arg(&compose));
    let (stdout, _) = text(&out);
    assert!(
        out.status.success() && stdout.contains("images: all on this box"),
        "{stdout}"
    );
    let out = run(up.cli().args(["app", "install"]).arg(&compose));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("(the file asked for {taken}: ")), "{stdout}");
    let out = run(up.cli().args(["image", "ls"]));
    let (stdout, _) = text(&out);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&image) && l.contains(" yes ") && l.ends_with("offline")),
        "{stdout}"
    );
    let out = run(up.cli().args(["app", "rm", "offline"]));
    assert!(out.status.success(), "{:?}", text(&out));
    drop(held);
    cubeos_tests::docker_cli(&["rmi", &image]);
}
