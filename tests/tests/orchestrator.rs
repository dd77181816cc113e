//! The orchestrator on a real Docker daemon in Swarm mode (strict: required), with
//! the test image built FROM scratch from a static busybox.

use std::time::Duration;

use cubeos_contract::topics;
use cubeos_kit::Bus;
use cubeos_tests::servers::{Dnsmasq, Nginx};
use cubeos_tests::{System, TEST_IMAGE, docker_cli, ensure_test_image, require, require_swarm, save_test_image_as};
use serde_json::{Value, json};

/// busybox httpd serving a page it writes into its data directory.
fn web_app(name: &str, body: &str) -> String {
    format!(
        r#"name: {name}
services:
  httpd:
    image: {TEST_IMAGE}
    command: ["sh", "-c", "echo {body} > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports:
      - "8080"
    volumes:
      - ./www:/www
    restart: unless-stopped
"#
    )
}

async fn system() -> System {
    system_with(|_| {}).await
}

async fn system_with(configure: impl FnOnce(&mut cubeos_kit::Config)) -> System {
    // A range of its own per system: tests run in parallel, each with its own
    // registry, so a port one test's stopped app left free must not be another's.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let slot = (std::process::id() % 7) as u16 * 8 + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 8;
    let base = 20000 + slot * 200;
    let mut system = System::start_with(move |c| {
        c.ports.user = format!("{base}-{}", base + 199);
        c.orchestrator.reconcile_interval = Duration::from_secs(2);
        c.orchestrator.converge_timeout = Duration::from_secs(20);
        configure(c);
    })
    .await;
    system.start_service("port-allocator").await;
    system.start_service("orchestrator").await;
    system
}

/// Sends an install and follows its progress to the final event.
async fn install(bus: &Bus, args: Value) -> Result<Vec<Value>, (Value, Vec<Value>)> {
    let name = args["name"].as_str().unwrap().to_owned();
    let mut events = bus
        .subscribe(&topics::app_progress(&name), rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    let reply = bus
        .request("orchestrator", "install", &args)
        .await
        .map_err(|e| (json!({"error": e.to_string()}), vec![]))?;
    assert!(reply["job"].is_string(), "{reply}");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let msg = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("install finishes")
            .unwrap();
        let event: Value = serde_json::from_slice(&msg.payload).unwrap();
        seen.push(event.clone());
        match event["status"].as_str() {
            Some("done") => return Ok(seen),
            Some("failed") => return Err((event, seen)),
            _ => {}
        }
    }
}

async fn app_port(bus: &Bus, name: &str) -> u64 {
    let app = bus
        .request("registry", "app.get", &json!({ "name": name }))
        .await
        .unwrap();
    app["ports"][0]["port"].as_u64().unwrap()
}

fn curl(port: u64) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "2", &format!("http://127.0.0.1:{port}/")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn eventually<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn running_task(docker: &bollard::Docker, service: &str) -> Option<String> {
    let filters = std::collections::HashMap::from([
        ("service".to_owned(), vec![service.to_owned()]),
        ("desired-state".to_owned(), vec!["running".to_owned()]),
    ]);
    let tasks = docker
        .list_tasks(Some(bollard::query_parameters::ListTasksOptions {
            filters: Some(filters),
        }))
        .await
        .ok()?;
    tasks
        .into_iter()
        .find(|t| t.status.as_ref().and_then(|s| s.state) == Some(bollard::models::TaskState::RUNNING))
        .and_then(|t| t.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_serve_stop_start_restart_heal_and_remove() {
    let Some(docker) = require_swarm("orchestrator_lifecycle").await else {
        return;
    };
    if !require("orchestrator_lifecycle", "curl") {
        return;
    }
    ensure_test_image();
    let system = system().await;
    let bus = system.client("t").await;

    let events = install(
        &bus,
        json!({ "compose": web_app("webone", "hello-cubeos"), "name": "webone" }),
    )
    .await
    .expect("installs");
    let steps: Vec<u64> = events.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps.first(), Some(&1));
    assert_eq!(steps.last(), Some(&8));
    let port = app_port(&bus, "webone").await;
    assert_eq!(eventually("serving", 30, async || curl(port)).await, "hello-cubeos");
    let status = bus
        .request("orchestrator", "status", &json!({ "name": "webone" }))
        .await
        .unwrap();
    assert_eq!(status["status"]["replicas"], "1/1", "{status}");
    let fqdn = bus
        .request("registry", "app.get", &json!({ "name": "webone" }))
        .await
        .unwrap();
    assert_eq!(fqdn["fqdns"][0]["fqdn"], "webone.cubeos.cube");
    assert_eq!(fqdn["fqdns"][0]["backend_port"], port);

    // Installing it again is a conflict.
    let again = bus
        .request(
            "orchestrator",
            "install",
            &json!({ "compose": web_app("webone", "x"), "name": "webone" }),
        )
        .await;
    assert_eq!(again.unwrap_err().code, cubeos_kit::ErrorCode::Conflict);

    // stop -> refused; start -> served.
    bus.request("orchestrator", "stop", &json!({ "name": "webone" }))
        .await
        .unwrap();
    eventually("stopped", 30, async || curl(port).is_none().then_some(())).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // a reconcile pass must not restart it
    assert!(curl(port).is_none(), "the reconciler restarted a stopped app");
    bus.request("orchestrator", "start", &json!({ "name": "webone" }))
        .await
        .unwrap();
    assert_eq!(
        eventually("served again", 30, async || curl(port)).await,
        "hello-cubeos"
    );

    // restart -> a new task.
    let before = eventually("a running task", 30, async || {
        running_task(&docker, "webone_httpd").await
    })
    .await;
    bus.request("orchestrator", "restart", &json!({ "name": "webone" }))
        .await
        .unwrap();
    eventually("a new task", 60, async || {
        running_task(&docker, "webone_httpd").await.filter(|t| *t != before)
    })
    .await;

    // Removed behind our back: the reconciler brings it back.
    docker.delete_service("webone_httpd").await.unwrap();
    eventually("service recreated", 15, async || {
        docker
            .inspect_service("webone_httpd", None::<bollard::query_parameters::InspectServiceOptions>)
            .await
            .ok()
    })
    .await;
    assert_eq!(
        eventually("served after healing", 30, async || curl(port)).await,
        "hello-cubeos"
    );

    // A burst of lifecycle commands: each replies with a job, but only the last
    // one goes on following Swarm; the others end as taken over, so a caller
    // cannot pile up pollers of Docker. (Stops: the task's stop grace outlasts
    // the burst.)
    let mut progress = bus
        .subscribe(&topics::app_progress("webone"), rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    let mut jobs = Vec::new();
    for _ in 0..5 {
        let reply = bus
            .request("orchestrator", "stop", &json!({ "name": "webone" }))
            .await
            .unwrap();
        jobs.push(reply["job"].as_str().unwrap().to_owned());
    }
    let mut ended: std::collections::HashMap<String, Value> = Default::default();
    while ended.len() < jobs.len() {
        let msg = tokio::time::timeout(Duration::from_secs(60), progress.recv())
            .await
            .expect("every job ends")
            .unwrap();
        let event: Value = serde_json::from_slice(&msg.payload).unwrap();
        // Earlier jobs of this app (the restart's) may end meanwhile.
        let job = event["job"].as_str().unwrap().to_owned();
        if event["status"] != "running" && jobs.contains(&job) {
            ended.insert(job, event);
        }
    }
    let (last, earlier) = jobs.split_last().unwrap();
    assert_eq!(ended[last]["status"], "done", "{:?}", ended[last]);
    for job in earlier {
        assert_eq!(
            (&ended[job]["status"], &ended[job]["code"]),
            (&json!("failed"), &json!("conflict")),
            "{:?}",
            ended[job]
        );
    }
    assert!(curl(port).is_none(), "the last stop ended before the app stopped");
    bus.request("orchestrator", "start", &json!({ "name": "webone" }))
        .await
        .unwrap();
    eventually("served after the burst", 30, async || curl(port)).await;

    // Logs come back.
    let logs = bus
        .request("orchestrator", "logs", &json!({ "name": "webone", "tail": 50 }))
        .await
        .unwrap();
    assert!(logs["lines"].is_array());

    // Remove, keeping data: nothing left but the data.
    let data = system.config.app_dir("webone").join("appdata");
    bus.request(
        "orchestrator",
        "remove",
        &json!({ "name": "webone", "keep_data": true }),
    )
    .await
    .unwrap();
    assert!(
        docker
            .inspect_service("webone_httpd", None::<bollard::query_parameters::InspectServiceOptions>)
            .await
            .is_err()
    );
    eventually("network gone", 30, async || {
        docker
            .inspect_network(
                "webone_default",
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(
        bus.request("registry", "app.get", &json!({ "name": "webone" }))
            .await
            .is_err()
    );
    let held = bus.request("registry", "port.list", &json!({ "app": "webone" })).await;
    assert!(held.is_err() || held.unwrap().as_array().unwrap().is_empty());
    assert!(data.join("www/index.html").exists(), "data kept");
    assert!(!system.config.app_dir("webone").join("appconfig").exists());
}

/// The version Swarm gives a service's spec: it changes with every update.
async fn spec_version(docker: &bollard::Docker, service: &str) -> Option<u64> {
    docker
        .inspect_service(service, None::<bollard::query_parameters::InspectServiceOptions>)
        .await
        .ok()?
        .version?
        .index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_service_is_left_alone_while_running_and_removed_when_stopped() {
    let Some(docker) = require_swarm("orchestrator_global").await else {
        return;
    };
    if !require("orchestrator_global", "curl") {
        return;
    }
    ensure_test_image();
    // Left by an earlier run that failed half-way, it would be updated (not
    // created) by the install, and Swarm records the update's progress.
    let _ = docker.delete_service("everynode_httpd").await;
    let system = system().await;
    let bus = system.client("t").await;
    let compose = web_app("everynode", "on-every-node")
        .replace("    restart: unless-stopped\n", "    deploy:\n      mode: global\n");
    install(&bus, json!({ "compose": compose, "name": "everynode" }))
        .await
        .expect("installs");
    let port = app_port(&bus, "everynode").await;
    assert_eq!(eventually("serving", 30, async || curl(port)).await, "on-every-node");

    // Two reconcile passes (every 2 s) find nothing to change.
    let version = spec_version(&docker, "everynode_httpd").await.expect("deployed");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        spec_version(&docker, "everynode_httpd").await,
        Some(version),
        "updated by a pass"
    );

    // A global service has no replica count: stopping removes it, and the
    // reconciler leaves it removed until the app is started.
    bus.request("orchestrator", "stop", &json!({ "name": "everynode" }))
        .await
        .unwrap();
    eventually("stopped", 30, async || curl(port).is_none().then_some(())).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        spec_version(&docker, "everynode_httpd").await,
        None,
        "recreated while stopped"
    );
    bus.request("orchestrator", "start", &json!({ "name": "everynode" }))
        .await
        .unwrap();
    assert_eq!(
        eventually("served again", 30, async || curl(port)).await,
        "on-every-node"
    );
    bus.request("orchestrator", "remove", &json!({ "name": "everynode" }))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deploy_rolls_back_everything() {
    let Some(docker) = require_swarm("orchestrator_rollback").await else {
        return;
    };
    ensure_test_image();
    let system = system().await;
    let bus = system.client("t").await;
    // An image that is there, a command that cannot start: it never converges.
    // (A missing image is refused before anything is deployed: its own test.)
    let compose = format!(
        "services:\n  app:\n    image: {TEST_IMAGE}\n    command: ['/no/such/command']\n    ports: ['80']\n    volumes: ['./data:/data']\n"
    );
    let (failed, _) = install(&bus, json!({ "compose": compose, "name": "broken" }))
        .await
        .expect_err("must fail");
    assert_eq!(failed["name"], "converge", "{failed}");
    assert!(failed["message"].as_str().unwrap().contains("broken_app"), "{failed}");
    assert!(
        docker
            .inspect_service("broken_app", None::<bollard::query_parameters::InspectServiceOptions>)
            .await
            .is_err()
    );
    assert!(
        bus.request("registry", "app.get", &json!({ "name": "broken" }))
            .await
            .is_err()
    );
    let held = bus
        .request("registry", "port.list", &json!({ "app": "broken" }))
        .await
        .unwrap();
    assert!(held.as_array().unwrap().is_empty(), "{held}");
    assert!(!system.config.app_dir("broken").exists(), "files removed");
    eventually("network gone", 30, async || {
        docker
            .inspect_network(
                "broken_default",
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_concurrent_installs_get_distinct_ports() {
    let Some(_docker) = require_swarm("orchestrator_concurrent").await else {
        return;
    };
    ensure_test_image();
    let system = system().await;
    let bus = system.client("t").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..5 {
        let bus = bus.clone();
        tasks.spawn(async move {
            let name = format!("multi{i}");
            install(&bus, json!({ "compose": web_app(&name, &name), "name": name }))
                .await
                .map_err(|(e, _)| e)
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().expect("install succeeds");
    }
    let mut ports = std::collections::HashSet::new();
    for i in 0..5 {
        let port = app_port(&bus, &format!("multi{i}")).await;
        assert!(ports.insert(port), "port {port} twice");
        assert_eq!(
            eventually("serving", 30, async || curl(port)).await,
            format!("multi{i}")
        );
    }
    for i in 0..5 {
        bus.request("orchestrator", "remove", &json!({ "name": format!("multi{i}") }))
            .await
            .unwrap();
        assert!(
            !system.config.app_dir(&format!("multi{i}")).exists(),
            "data gone without keep_data"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_install_requests_are_typed_errors() {
    let mut system = System::start_with(|c| c.docker.socket = "/nonexistent/docker.sock".into()).await;
    system.start_service("port-allocator").await;
    system.start_service("orchestrator").await;
    let bus = system.client("t").await;
    for args in [
        json!({}),
        json!({ "compose": "services: {}", "name": "x" }),
        json!({ "compose": web_app("x", "y"), "name": "../x" }),
        json!({ "compose": web_app("x", "y"), "path": "/etc/passwd" }),
        json!({ "path": "relative.yml", "name": "x" }),
        json!({ "compose": "services:\n  a:\n    image: x\n    privileged: true\n", "name": "priv" }),
    ] {
        let e = bus.request("orchestrator", "install", &args).await.unwrap_err();
        assert_eq!(e.code, cubeos_kit::ErrorCode::BadRequest, "{args}: {e}");
    }
    // Too many images to check is refused before Docker is asked.
    let many: Vec<String> = (0..257).map(|i| format!("i{i}")).collect();
    let e = bus
        .request("orchestrator", "image.list", &json!({ "images": many }))
        .await
        .unwrap_err();
    assert_eq!(e.code, cubeos_kit::ErrorCode::BadRequest, "{e}");
    // Docker is unreachable: said so, no crash.
    let e = bus
        .request(
            "orchestrator",
            "install",
            &json!({ "compose": web_app("nodocker", "y") }),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, cubeos_kit::ErrorCode::Unavailable, "{e}");
    assert!(
        bus.request("registry", "app.get", &json!({ "name": "nodocker" }))
            .await
            .is_err()
    );
}

/// A CasaOS store file with its main image swapped for the local test image (no
/// image can be pulled here) and a command serving HTTP on the app's own port.
fn store_app(file: &str, port: u16) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/casaos-appstore/apps")
        .join(file);
    let text = std::fs::read_to_string(path).expect("corpus file");
    let mut out = String::new();
    let mut swapped = false;
    for line in text.lines() {
        if !swapped && line.trim_start().starts_with("image:") {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(&format!("{indent}image: {TEST_IMAGE}\n"));
            out.push_str(&format!("{indent}command: [\"httpd\", \"-f\", \"-p\", \"{port}\"]\n"));
            swapped = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn http_code(port: u64) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-m",
            "2",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .ok()?;
    let code = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (code != "000").then_some(code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn casaos_store_apps_install_and_converge() {
    let Some(docker) = require_swarm("casaos_store_apps").await else {
        return;
    };
    if !require("casaos_store_apps", "curl") {
        return;
    }
    ensure_test_image();
    let system = system().await;
    let bus = system.client("t").await;
    for (file, name, port, mounts) in [
        (
            "Navidrome.yml",
            "navidrome",
            4533u16,
            vec!["apps/navidrome/appdata/data", "shared/Media/Music"],
        ),
        (
            "ActualBudget.yml",
            "actualbudget",
            5006,
            vec!["apps/actualbudget/appdata"],
        ),
    ] {
        install(&bus, json!({ "compose": store_app(file, port), "name": name }))
            .await
            .unwrap_or_else(|(e, _)| panic!("{file}: {e}"));
        let app = bus
            .request("registry", "app.get", &json!({ "name": name }))
            .await
            .unwrap();
        assert_eq!(app["source"], "casaos");
        assert!(app["store_id"].as_str().unwrap().starts_with("org.icewhale"), "{app}");
        let published = app["ports"][0]["port"].as_u64().unwrap();
        assert!(
            eventually("served", 30, async || http_code(published))
                .await
                .starts_with(['2', '4'])
        );
        // Ports and mounts as translated.
        let service = docker
            .inspect_service(
                &format!("{name}_{name}"),
                None::<bollard::query_parameters::InspectServiceOptions>,
            )
            .await
            .map_err(|_| ())
            .ok();
        let spec = match service {
            Some(s) => s.spec.unwrap(),
            None => {
                let all = cubeos_orchestrator::stack::managed_services(&docker, &system.config.instance_id().unwrap())
                    .await
                    .unwrap();
                all.into_iter()
                    .find(|s| cubeos_orchestrator::stack::stack_of(s) == Some(name))
                    .unwrap()
                    .spec
                    .unwrap()
            }
        };
        let ports = spec.endpoint_spec.unwrap().ports.unwrap();
        assert_eq!(
            (ports[0].target_port, ports[0].published_port),
            (Some(i64::from(port)), Some(published as i64))
        );
        let sources: Vec<String> = spec
            .task_template
            .unwrap()
            .container_spec
            .unwrap()
            .mounts
            .unwrap()
            .into_iter()
            .filter_map(|m| m.source)
            .collect();
        for m in mounts {
            let path = system.config.data_dir.join(m);
            assert!(path.is_dir(), "{} was not created", path.display());
            assert!(sources.contains(&path.display().to_string()), "{sources:?}");
        }
        bus.request("orchestrator", "remove", &json!({ "name": name }))
            .await
            .unwrap();
    }
}

/// Issue 7 end to end: an installed app's name resolves (dnsmasq) and proxies
/// (nginx) to its published port; once removed, both are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_app_gets_a_name_that_resolves_and_proxies() {
    let Some(_docker) = require_swarm("app_name_end_to_end").await else {
        return;
    };
    for tool in ["dnsmasq", "nginx", "dig", "curl"] {
        if !require("app_name_end_to_end", tool) {
            return;
        }
    }
    ensure_test_image();
    let dir = tempfile::tempdir().unwrap();
    let dns = Dnsmasq::start(dir.path());
    let web = Nginx::start(dir.path());
    let mut system = system_with(|c| {
        dns.configure(c);
        web.configure(c);
    })
    .await;
    system.start_service("proxy").await;
    let bus = system.client("t").await;
    install(
        &bus,
        json!({ "compose": web_app("named", "hello-by-name"), "name": "named" }),
    )
    .await
    .expect("installs");
    let port = app_port(&bus, "named").await;
    eventually("the app serves on its port", 30, async || {
        curl(port).filter(|b| b == "hello-by-name")
    })
    .await;
    eventually("its name resolves", 10, async || {
        (dns.dig("named.cubeos.cube").1 == ["10.42.24.1"]).then_some(())
    })
    .await;
    eventually("its name proxies to the app", 10, async || {
        (web.get("named.cubeos.cube") == (200, "hello-by-name\n".into())).then_some(())
    })
    .await;

    bus.request("orchestrator", "remove", &json!({ "name": "named" }))
        .await
        .expect("removes");
    eventually("the name is gone from DNS", 10, async || {
        (dns.dig("named.cubeos.cube").0 == "NXDOMAIN").then_some(())
    })
    .await;
    eventually("the name is gone from nginx", 10, async || {
        (web.get("named.cubeos.cube").0 == 404).then_some(())
    })
    .await;
}

/// Issue 11, part 6: a named volume goes with its app, and a failed install
/// removes what it created (a shared folder, a data folder, a volume) and nothing
/// that was there before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_and_rollback_leave_nothing_they_created_and_keep_what_was_there() {
    let Some(docker) = require_swarm("orchestrator_leftovers").await else {
        return;
    };
    ensure_test_image();
    let system = system_with(|c| c.orchestrator.converge_timeout = Duration::from_secs(6)).await;
    let bus = system.client("t").await;
    let volume_exists = async |name: &str| docker.inspect_volume(name).await.is_ok();

    let compose = format!(
        "services:\n  web:\n    image: {TEST_IMAGE}\n    command: ['httpd', '-f', '-p', '80', '-h', '/data']\n    ports: ['80']\n    volumes: ['data:/data']\nvolumes:\n  data: {{}}\n"
    );
    install(&bus, json!({ "compose": compose, "name": "vols" }))
        .await
        .expect("installs");
    assert!(volume_exists("vols_data").await);
    let removed = bus
        .request("orchestrator", "remove", &json!({ "name": "vols" }))
        .await
        .expect("removes");
    assert_eq!(removed["volumes_left"], json!([]), "{removed}");
    assert!(!volume_exists("vols_data").await, "the named volume went with the app");

    // What was there before the install, and what the install will create.
    let data = &system.config.data_dir;
    let books = data.join("shared/Media/Books");
    std::fs::create_dir_all(&books).unwrap();
    let kept = system.config.app_dir("failing").join("appdata/keep.txt");
    std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
    std::fs::write(&kept, "from an earlier install, removed with --keep-data").unwrap();
    let compose = format!(
        "services:\n  app:\n    image: {TEST_IMAGE}\n    command: ['/no/such/command']\n    ports: ['80']\n    volumes:\n      - /DATA/Media/Music:/music\n      - /DATA/Media/Books:/books\n      - ./cfg:/cfg\n      - cache:/cache\nvolumes:\n  cache: {{}}\n"
    );
    let (failed, _) = install(&bus, json!({ "compose": compose, "name": "failing" }))
        .await
        .expect_err("never converges");
    assert_eq!(failed["name"], "converge", "{failed}");
    assert!(
        !data.join("shared/Media/Music").exists(),
        "the shared folder it created is gone"
    );
    assert!(books.is_dir(), "the shared folder that was there stays");
    assert!(!system.config.app_dir("failing").join("appdata/cfg").exists());
    assert!(!system.config.app_dir("failing").join("appconfig").exists());
    assert!(kept.exists(), "data from before the install stays");
    assert!(!system.config.app_dir("failing").join(".installing").exists());
    assert!(!volume_exists("failing_cache").await, "the volume it created is gone");
}

/// Issue 11, part 7: an install whose image is not on the box is refused at once,
/// naming the image and how to bring it; `image.load` brings it from a `docker
/// save` archive with progress, and then the install goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_refused_at_once_and_loads_from_a_file() {
    let Some(_docker) = require_swarm("orchestrator_images").await else {
        return;
    };
    if !require("orchestrator_images", "curl") {
        return;
    }
    ensure_test_image();
    let image = format!("cubeos-test/offline-only-{}:1", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("offline.tar");
    save_test_image_as(&image, &archive);

    let system = system().await;
    let bus = system.client("t").await;
    let compose = web_app("offline", "loaded-from-a-file").replace(TEST_IMAGE, &image);
    let started = std::time::Instant::now();
    let err = bus
        .request(
            "orchestrator",
            "install",
            &json!({ "compose": compose, "name": "offline" }),
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code, cubeos_kit::ErrorCode::NotFound, "{err}");
    assert!(
        err.message.contains(&image) && err.message.contains("cubeos image load <file.tar>"),
        "{err}"
    );
    assert_eq!(err.details.unwrap()["missing_images"], json!([image]));
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
    assert!(
        bus.request("registry", "app.get", &json!({ "name": "offline" }))
            .await
            .is_err()
    );
    assert!(!system.config.app_dir("offline").exists());
    let listed = bus
        .request("orchestrator", "image.list", &json!({ "images": [image, TEST_IMAGE] }))
        .await
        .unwrap();
    assert_eq!(listed["images"][0]["present"], false, "{listed}");
    assert_eq!(listed["images"][1]["present"], true, "{listed}");
    assert_eq!(listed["images"][1]["location"], "node", "{listed}");

    // Bring it from the archive, following the job's progress.
    let mut progress = bus
        .subscribe(&topics::image_progress(), rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    let job = bus
        .request(
            "orchestrator",
            "image.load",
            &json!({ "path": archive.display().to_string() }),
        )
        .await
        .unwrap()["job"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut steps = Vec::new();
    let done = loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), progress.recv())
            .await
            .expect("the load finishes")
            .unwrap();
        let event: Value = serde_json::from_slice(&msg.payload).unwrap();
        if event["job"] != job.as_str() {
            continue;
        }
        steps.push(event["step"].as_u64().unwrap());
        if event["status"] != "running" {
            break event;
        }
    };
    assert_eq!(done["status"], "done", "{done}");
    assert!(done["message"].as_str().unwrap().contains(&image), "{done}");
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "progress only grows: {steps:?}");
    let last = bus
        .request("orchestrator", "job.get", &json!({ "job": job }))
        .await
        .unwrap();
    assert_eq!(last["status"], "done");

    install(&bus, json!({ "compose": compose, "name": "offline" }))
        .await
        .expect("installs once the image is there");
    let port = app_port(&bus, "offline").await;
    assert_eq!(
        eventually("serving", 30, async || curl(port)).await,
        "loaded-from-a-file"
    );
    let all = bus.request("orchestrator", "image.list", &json!({})).await.unwrap();
    let row = all["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["image"] == image.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{all}"));
    assert_eq!(
        (row["present"].clone(), row["apps"].clone()),
        (json!(true), json!(["offline"]))
    );

    // Not an archive, or not there: a typed error, or a failed job; no panic.
    let err = bus
        .request("orchestrator", "image.load", &json!({ "path": "relative.tar" }))
        .await
        .unwrap_err();
    assert_eq!(err.code, cubeos_kit::ErrorCode::BadRequest);
    let err = bus
        .request("orchestrator", "image.load", &json!({ "path": "/nonexistent.tar" }))
        .await
        .unwrap_err();
    assert_eq!(err.code, cubeos_kit::ErrorCode::BadRequest);
    bus.request("orchestrator", "remove", &json!({ "name": "offline" }))
        .await
        .unwrap();
    docker_cli(&["rmi", &image]);
}

/// Issue 11, part 7: with `orchestrator.local_registry` set, an image named after
/// that registry counts as present when the registry has it (Swarm pulls it from
/// there), and is refused when it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_in_the_local_registry_counts_as_present() {
    let Some(_docker) = require_swarm("orchestrator_local_registry").await else {
        return;
    };
    for tool in ["docker-registry", "curl"] {
        if !require("orchestrator_local_registry", tool) {
            return;
        }
    }
    ensure_test_image();
    let dir = tempfile::tempdir().unwrap();
    let registry = cubeos_tests::servers::ImageRegistry::start(dir.path());
    let image = format!("{}/cubeos-test/from-registry:1", registry.host());
    docker_cli(&["tag", TEST_IMAGE, &image]);
    docker_cli(&["push", &image]);
    docker_cli(&["rmi", &image]);
    let host = registry.host();
    let system = system_with(move |c| c.orchestrator.local_registry = host).await;
    let bus = system.client("t").await;
    let missing = format!("{}/cubeos-test/never-pushed:1", registry.host());
    let listed = bus
        .request("orchestrator", "image.list", &json!({ "images": [image, missing] }))
        .await
        .unwrap();
    assert_eq!(listed["images"][0]["location"], "registry", "{listed}");
    assert_eq!(listed["images"][0]["present"], true, "{listed}");
    assert_eq!(listed["images"][1]["present"], false, "{listed}");

    let err = bus
        .request(
            "orchestrator",
            "install",
            &json!({ "compose": web_app("unpushed", "x").replace(TEST_IMAGE, &missing), "name": "unpushed" }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, cubeos_kit::ErrorCode::NotFound, "{err}");
    install(
        &bus,
        json!({ "compose": web_app("pulled", "from-the-registry").replace(TEST_IMAGE, &image), "name": "pulled" }),
    )
    .await
    .expect("installs, Swarm pulling from the local registry");
    let port = app_port(&bus, "pulled").await;
    assert_eq!(
        eventually("serving", 30, async || curl(port)).await,
        "from-the-registry"
    );
    bus.request("orchestrator", "remove", &json!({ "name": "pulled" }))
        .await
        .unwrap();
    let _ = std::process::Command::new("docker").args(["rmi", &image]).output();
}
