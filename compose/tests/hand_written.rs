//! Hand-written compose files: every syntax, merge keys, interpolation, and the
//! inputs that must be refused with a typed error.

use bollard_stubs::models::{MountType, TaskSpecRestartPolicyConditionEnum};
use cubeos_compose::{ComposeError, Context, InterpolationError, Outcome, SystemVars, Vars, translate};

fn ctx(name: &str) -> Context {
    let system = SystemVars {
        timezone: "UTC".into(),
        puid: 1001,
        pgid: 1002,
    };
    let overrides: Vars = [("WEB_PORT".to_owned(), "8088".to_owned())].into();
    Context::new(
        name,
        format!("/d/apps/{name}/appdata").into(),
        "/d/shared".into(),
        &system,
        &overrides,
    )
}

const MERGE: &str = r#"
x-common: &common
  restart: unless-stopped
  environment:
    PUID: ${PUID}
    PGID: $PGID
    GREETING: "${GREETING:-hello} $$HOME"
services:
  web:
    <<: *common
    image: busybox:1.36
    command: ["httpd", "-f", "-p", "80"]
    ports:
      - "${WEB_PORT}:80"
      - 9000:9000/udp
      - target: 443
        published: 8443
      - "7000-7001:7000-7001"
    volumes:
      - ./site:/www:ro
      - cache:/cache
      - type: tmpfs
        target: /tmp
        tmpfs: { size: 16m }
    healthcheck:
      test: wget -q -O- http://localhost/
      interval: 30s
      retries: 3
    deploy:
      replicas: 2
      resources:
        limits: { cpus: "0.5", memory: 128M }
  worker:
    <<: *common
    image: busybox:1.36
    restart: on-failure:5
    network_mode: host
    ports: ["8125:8125/udp"]
volumes:
  cache: {}
"#;

#[test]
fn merge_keys_interpolation_and_every_port_syntax() {
    let t = translate(MERGE, &ctx("demo")).unwrap();
    assert!(t.deployable(), "{:?}", t.refusals);
    assert_eq!(t.app.name, "demo");
    let web = &t.services[0];
    assert_eq!(web.name.as_deref(), Some("demo_web"));
    let c = web.task_template.as_ref().unwrap().container_spec.as_ref().unwrap();
    let env = c.env.clone().unwrap();
    assert!(
        env.contains(&"PUID=1001".to_owned()) && env.contains(&"PGID=1002".to_owned()),
        "{env:?}"
    );
    assert!(env.contains(&"GREETING=hello $HOME".to_owned()), "{env:?}");
    assert_eq!(c.args.clone().unwrap(), ["httpd", "-f", "-p", "80"]);
    let ports: Vec<(i64, Option<i64>)> = web
        .endpoint_spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.target_port.unwrap(), p.published_port))
        .collect();
    assert_eq!(
        ports,
        [
            (80, Some(8088)),
            (9000, Some(9000)),
            (443, Some(8443)),
            (7000, Some(7000)),
            (7001, Some(7001))
        ]
    );
    let mounts: Vec<(Option<String>, MountType)> = c
        .mounts
        .iter()
        .flatten()
        .map(|m| (m.source.clone(), m.typ.unwrap()))
        .collect();
    assert_eq!(
        mounts,
        [
            (Some("/d/apps/demo/appdata/site".into()), MountType::BIND),
            (Some("demo_cache".into()), MountType::VOLUME),
            (None, MountType::TMPFS)
        ]
    );
    assert_eq!(t.volumes, ["demo_cache"]);
    let health = c.health_check.as_ref().unwrap();
    assert_eq!(
        health.test.clone().unwrap(),
        ["CMD-SHELL", "wget -q -O- http://localhost/"]
    );
    assert_eq!(health.interval, Some(30_000_000_000));
    let task = web.task_template.as_ref().unwrap();
    assert_eq!(
        task.restart_policy.as_ref().unwrap().condition,
        Some(TaskSpecRestartPolicyConditionEnum::ANY)
    );
    assert_eq!(
        task.resources.as_ref().unwrap().limits.as_ref().unwrap().nano_cpus,
        Some(500_000_000)
    );
    assert_eq!(
        web.mode.as_ref().unwrap().replicated.as_ref().unwrap().replicas,
        Some(2)
    );

    let worker = &t.services[1];
    let task = worker.task_template.as_ref().unwrap();
    assert_eq!(task.networks.as_ref().unwrap()[0].target.as_deref(), Some("host"));
    let restart = task.restart_policy.as_ref().unwrap();
    assert_eq!(
        (restart.condition, restart.max_attempts),
        (Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE), Some(5))
    );
    assert!(worker.endpoint_spec.is_none(), "host networking publishes nothing");
    assert!(
        t.ports
            .iter()
            .any(|p| p.service == "worker" && p.host_network && p.published == Some(8125))
    );
    assert!(
        t.report
            .iter()
            .any(|r| r.service == "worker" && r.key == "network_mode" && r.outcome == Outcome::Mapped)
    );
}

#[test]
fn required_variables_are_bad_requests_naming_them() {
    let text = "services:\n  db:\n    image: postgres\n    environment:\n      POSTGRES_PASSWORD: ${DB_PASSWORD:?set a database password}\n";
    match translate(text, &ctx("db")) {
        Err(ComposeError::Interpolation {
            path,
            source: InterpolationError::Required { name, message },
        }) => {
            assert_eq!(name, "DB_PASSWORD");
            assert_eq!(message, "set a database password");
            assert!(path.contains("POSTGRES_PASSWORD"), "{path}");
        }
        other => panic!("expected a required-variable error, got {other:?}"),
    }
}

#[test]
fn swarm_incompatibilities_are_reported_and_refused() {
    let text = r#"
services:
  app:
    image: x
    privileged: true
    devices: ["/dev/ttyUSB0:/dev/ttyUSB0"]
    container_name: app
    depends_on: [db]
    network_mode: "container:db"
    env_file: .env
    links: [db]
    volumes: ["/:/host", "/etc/localtime:/etc/localtime:ro"]
  db:
    build: ./db
"#;
    let t = translate(text, &ctx("bad")).unwrap();
    let outcome = |svc: &str, key: &str| {
        t.report
            .iter()
            .find(|r| r.service == svc && r.key == key)
            .map(|r| r.outcome)
    };
    assert_eq!(outcome("app", "privileged"), Some(Outcome::Unsupported));
    assert_eq!(outcome("app", "devices"), Some(Outcome::Unsupported));
    assert_eq!(outcome("app", "container_name"), Some(Outcome::Ignored));
    assert_eq!(outcome("app", "depends_on"), Some(Outcome::Ignored));
    assert_eq!(outcome("app", "links"), Some(Outcome::Ignored));
    assert_eq!(outcome("app", "network_mode"), Some(Outcome::Unsupported));
    assert_eq!(outcome("app", "env_file"), Some(Outcome::Unsupported));
    assert_eq!(outcome("db", "build"), Some(Outcome::Unsupported));
    let host_paths: Vec<_> = t
        .report
        .iter()
        .filter(|r| r.key == "host-path")
        .map(|r| (r.outcome, r.reason.clone()))
        .collect();
    assert_eq!(host_paths.len(), 2);
    assert!(
        host_paths
            .iter()
            .any(|(o, r)| *o == Outcome::Unsupported && r.starts_with("/ -> /host"))
    );
    assert!(host_paths.iter().any(|(o, _)| *o == Outcome::Mapped));
    let err = t.check(false).unwrap_err().to_string();
    assert!(err.contains("app.privileged") && err.contains("db.build"), "{err}");
}

#[test]
fn hostile_input_is_a_typed_error() {
    let c = ctx("evil");
    // Malformed YAML.
    assert!(matches!(
        translate("services: [unclosed", &c),
        Err(ComposeError::Yaml(_))
    ));
    assert!(matches!(
        translate("just a string", &c),
        Err(ComposeError::Invalid { .. })
    ));
    assert!(matches!(
        translate("services: {}", &c),
        Err(ComposeError::Invalid { .. })
    ));
    // 5 MB.
    let huge = format!(
        "services:\n  a:\n    image: x\n    command: \"{}\"\n",
        "x".repeat(5 << 20)
    );
    assert!(matches!(translate(&huge, &c), Err(ComposeError::TooLarge { .. })));
    // Deep nesting.
    let deep = format!(
        "services:\n  a:\n    image: x\n    labels: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(translate(&deep, &c).is_err());
    // Alias bomb.
    let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
    for i in 0..9 {
        bomb.push_str(&format!(
            "{}: &{} [*{},*{},*{},*{},*{},*{},*{},*{},*{},*{}]\n",
            (b'b' + i) as char,
            (b'b' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i) as char
        ));
    }
    bomb.push_str("services:\n  a:\n    image: x\n    labels: *j\n");
    assert!(translate(&bomb, &c).is_err());
    // Names that would become paths or Docker names.
    for name in ["../x", "a/b", "-x", ""] {
        let text = format!("services:\n  '{name}':\n    image: x\n");
        assert!(
            matches!(translate(&text, &c), Err(ComposeError::Invalid { .. })),
            "{name}"
        );
    }
    assert!(translate("services:\n  a:\n    image: x\n", &ctx("../x")).is_err());
    // Traversal in a bind source, bad ports, wrong types.
    let cases = [
        "services:\n  a:\n    image: x\n    volumes: ['/DATA/AppData/evil/../../../etc:/x']\n",
        "services:\n  a:\n    image: x\n    ports: ['70000:80']\n",
        "services:\n  a:\n    image: x\n    ports: 80\n",
        "services:\n  a:\n    image: [x]\n",
        "services:\n  a:\n    command: x\n",
        "services:\n  a:\n    image: x\n    deploy: {replicas: -1}\n",
        "services:\n  a:\n    image: x\n    networks: [undeclared]\n",
        "services:\n  a:\n    image: x\n    environment: ${A\n",
    ];
    for text in cases {
        assert!(translate(text, &c).is_err(), "{text}");
    }
}
