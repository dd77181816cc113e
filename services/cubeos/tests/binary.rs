//! The `cubeos` binary as people and init systems use it: `cubeos up` with no
//! configuration, client commands from a second process, SIGTERM, and SIGKILL of a
//! registry process in the middle of writes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cubeos_tests::{System, free_port, wait_for_registry};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_cubeos");

/// `cubeos` with its ports and data dir set the way a user would set them.
/// `cubeos` with the loopback broker on `mqtt` and the gate on `gate` (its
/// WebSocket listener on any free port).
fn cubeos(data: &Path, mqtt: u16, gate: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data")
        .arg(data)
        .env("CUBEOS__BROKER__TCP_LISTEN", format!("127.0.0.1:{mqtt}"))
        .env("CUBEOS__BROKER__ADDRESS", format!("127.0.0.1:{mqtt}"))
        .env("CUBEOS__GATE__TCP_LISTEN", format!("127.0.0.1:{gate}"))
        .env("CUBEOS__GATE__ADDRESS", format!("127.0.0.1:{gate}"))
        .env("CUBEOS__GATE__WS_LISTEN", "127.0.0.1:0")
        .env("CUBEOS__LOG__LEVEL", "info");
    cmd
}

/// A child process that is killed if the test fails before it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("cubeos runs")
}

/// Reads stderr until `count` lines match `needle`, returning every line read.
fn wait_for_lines(child: &mut Child, needle: &str, count: usize) -> Vec<String> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining after the test stops listening: a closed pipe would make
        // the child's log writes fail.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines.iter().filter(|l: &&String| l.contains(needle)).count() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("no {count}x '{needle}' in:\n{}", lines.join("\n")),
        }
    }
    lines
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "cubeos did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
        let mut config = cubeos_shared::Config::default();
        config.broker.address = format!("127.0.0.1:{mqtt}").parse().unwrap();
        let bus = cubeos_shared::Bus::connect(cubeos_shared::BusOptions::new(
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
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("preferred port 6130/tcp is taken (app 'wiki')"),
        "{out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("wiki: 6100/tcp"),
        "{out:?}"
    );
    let out = run(cubeos(&data, mqtt, ws).args(["port", "check", "6100"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("6100/tcp is taken (user range):\n  app wiki"),
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
            .any(|l| l.starts_with("user") && l.contains("tcp") && l.contains("6100-6999") && l.contains(" 2 ")),
        "{text}"
    );
    let out = run(cubeos(&data, mqtt, ws).args(["port", "release", "wiki", "6100"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "released 6100/tcp");

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
        run(Command::new(BIN)
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
    let mut child = Command::new(BIN)
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
    let base = free_port();
    let with_range = |cmd: &mut Command| {
        cmd.env("CUBEOS__PORTS__USER", format!("{base}-{}", base + 20));
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
    let out = run(cubeos(&data, mqtt, ws).args(["app", "stop", "hello"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello: stop done");
    let out = run(cubeos(&data, mqtt, ws).args(["app", "status", "hello", "--json"]));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["status"]["replicas"], "0/0", "{status}");
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
    let base = free_port();
    let mut system = System::start_with(|c| c.ports.user = format!("{base}-{}", base + 50)).await;
    system.start_port_allocator().await;
    let data = system.config.data_dir.clone();
    let (mqtt, ws) = (system.mqtt_port(), system.gate_port());
    let spawn = || {
        Guard(
            cubeos(&data, mqtt, ws)
                .env("CUBEOS__PORTS__USER", format!("{base}-{}", base + 50))
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
