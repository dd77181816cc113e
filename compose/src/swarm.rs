//! One compose service -> one Swarm service spec, the way `docker stack deploy`
//! builds it, plus the rows of the report for every key Swarm does not take as is.

use std::collections::{BTreeMap, HashMap};

use bollard_stubs::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec, HealthConfig,
    Limit, Mount, MountBindOptions, MountTmpfsOptions, MountType, NetworkAttachmentConfig, ResourceObject,
    ResourcesUlimits, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecConfigs, TaskSpecContainerSpecDnsConfig, TaskSpecContainerSpecFile1, TaskSpecLogDriver,
    TaskSpecPlacement, TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use cubeos_contract::models::Protocol;
use serde_json::{Map, Value};

use super::paths::{self, HostPath};
use super::report::Report;
use super::syntax::{self, VolumeKind, scalar};
use super::{ComposeError, Context, PortKey, PublishMode, PublishedPort};

/// Labels every object CubeOS creates carries.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
pub const MANAGED_LABEL: &str = "cubeos.managed";
pub const INSTANCE_LABEL: &str = "cubeos.instance";

/// The labels that make an object part of a stack CubeOS owns.
pub fn ownership_labels(stack: &str, instance: &str) -> HashMap<String, String> {
    [
        (NAMESPACE_LABEL.to_owned(), stack.to_owned()),
        (MANAGED_LABEL.to_owned(), "true".to_owned()),
        (INSTANCE_LABEL.to_owned(), instance.to_owned()),
    ]
    .into()
}

/// What translating one service produced besides its spec.
#[derive(Default)]
pub struct Extras {
    pub ports: Vec<PublishedPort>,
    pub bind_dirs: Vec<std::path::PathBuf>,
    pub named_volumes: Vec<String>,
    pub networks: Vec<String>,
}

/// Keys Swarm has no use for and that change nothing for the app.
const IGNORED: &[(&str, &str)] = &[
    (
        "container_name",
        "Swarm names tasks <stack>_<service>.<n>; reach the service by its name",
    ),
    (
        "depends_on",
        "Swarm starts services together; start order is not honoured",
    ),
    ("links", "services reach each other by name on the stack network"),
    (
        "external_links",
        "services reach each other by name on the stack network",
    ),
    ("expose", "informational only; services share the stack network"),
    ("cpu_shares", "Swarm has no CPU shares; use deploy.resources"),
    ("cpu_quota", "Swarm has no CPU quota; use deploy.resources.limits.cpus"),
    ("cpuset", "Swarm cannot pin CPUs"),
    (
        "shm_size",
        "Swarm services cannot set /dev/shm size; mount a tmpfs on /dev/shm instead",
    ),
    ("security_opt", "Swarm services cannot set security options"),
    ("profiles", "compose profiles do not apply to a deployed stack"),
    ("mac_address", "Swarm assigns addresses"),
    ("domainname", "not supported by Swarm services"),
    ("ipc", "Swarm services cannot share IPC namespaces"),
    (
        "pull_policy",
        "CubeOS checks that every image is on the box before deploying",
    ),
    ("platform", "the node's platform is used"),
    ("oom_kill_disable", "not supported by Swarm services"),
    ("memswap_limit", "not supported by Swarm services"),
    ("stdin_open", "kept as OpenStdin; nothing attaches to it"),
];

fn invalid(service: &str, key: &str, reason: impl Into<String>) -> ComposeError {
    ComposeError::Invalid {
        path: format!("services.{service}.{key}"),
        reason: reason.into(),
    }
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Top-level declarations a service may refer to: compose name -> Swarm name.
pub struct Declared<'a> {
    pub networks: &'a BTreeMap<String, String>,
    pub volumes: &'a BTreeMap<String, String>,
    pub configs: &'a BTreeMap<String, String>,
}

/// Translates the service `name` of stack `ctx.name`.
pub fn service(
    ctx: &Context,
    name: &str,
    def: &Map<String, Value>,
    declared: &Declared<'_>,
    report: &mut Report,
) -> Result<(ServiceSpec, Extras), ComposeError> {
    let stack = &ctx.name;
    let mut extras = Extras::default();
    let mut container = TaskSpecContainerSpec::default();
    let mut task = TaskSpec::default();
    let mut spec = ServiceSpec {
        name: Some(format!("{stack}_{name}")),
        ..Default::default()
    };
    let mut service_labels = ownership_labels(stack, &ctx.instance);
    let mut container_labels: HashMap<String, String> = [(NAMESPACE_LABEL.to_owned(), stack.clone())].into();
    let mut resources = TaskSpecResources::default();
    let mut restart_from_key: Option<TaskSpecRestartPolicy> = None;
    let mut host_network = false;
    let mut mounts = Vec::new();
    let mut attach: Vec<String> = Vec::new();
    let mut networks_given = false;
    let mut port_defs: Vec<syntax::PortMapping> = Vec::new();
    let mut privileged = false;
    let str_of = |key: &str, v: &Value| scalar(v).ok_or_else(|| invalid(name, key, "must be a string"));

    for (key, value) in def {
        let key = key.as_str();
        let bad = |reason: String| invalid(name, key, reason);
        match key {
            "image" => container.image = Some(str_of(key, value)?),
            "command" => container.args = Some(syntax::command(value).map_err(bad)?),
            "entrypoint" => container.command = Some(syntax::command(value).map_err(bad)?),
            "environment" => container.env = Some(syntax::environment(value, &ctx.vars).map_err(bad)?),
            "user" => container.user = Some(str_of(key, value)?),
            "working_dir" => container.dir = Some(str_of(key, value)?),
            "hostname" => container.hostname = Some(str_of(key, value)?),
            "labels" => container_labels.extend(syntax::string_map(value).map_err(bad)?),
            "cap_add" => container.capability_add = Some(syntax::string_list(value).map_err(bad)?),
            "cap_drop" => container.capability_drop = Some(syntax::string_list(value).map_err(bad)?),
            "sysctls" => container.sysctls = Some(syntax::string_map(value).map_err(bad)?.into_iter().collect()),
            "ulimits" => container.ulimits = Some(ulimits(value).map_err(bad)?),
            "init" => container.init = value.as_bool(),
            "read_only" => container.read_only = value.as_bool(),
            "tty" => container.tty = value.as_bool(),
            "stdin_open" => container.open_stdin = value.as_bool(),
            "stop_signal" => container.stop_signal = Some(str_of(key, value)?),
            "stop_grace_period" => container.stop_grace_period = Some(nanos(syntax::duration(value).map_err(bad)?)),
            "healthcheck" => container.health_check = Some(healthcheck(value).map_err(bad)?),
            "logging" => task.log_driver = Some(logging(value).map_err(bad)?),
            "dns" => {
                let dns = container
                    .dns_config
                    .get_or_insert_with(TaskSpecContainerSpecDnsConfig::default);
                dns.nameservers = Some(syntax::string_list(value).map_err(bad)?);
            }
            "dns_search" => {
                let dns = container
                    .dns_config
                    .get_or_insert_with(TaskSpecContainerSpecDnsConfig::default);
                dns.search = Some(syntax::string_list(value).map_err(bad)?);
            }
            "extra_hosts" => container.hosts = Some(extra_hosts(value).map_err(bad)?),
            "tmpfs" => {
                for entry in syntax::string_list(value).map_err(bad)? {
                    let target = entry.split(':').next().unwrap_or_default().to_owned();
                    if !target.starts_with('/') {
                        return Err(bad(format!("tmpfs path '{target}' must be absolute")));
                    }
                    mounts.push(Mount {
                        target: Some(target),
                        typ: Some(MountType::TMPFS),
                        ..Default::default()
                    });
                }
            }
            "ports" => {
                for entry in value.as_array().ok_or_else(|| bad("must be a list".into()))? {
                    port_defs.extend(syntax::ports(entry).map_err(bad)?);
                }
            }
            "volumes" => {
                for entry in value.as_array().ok_or_else(|| bad("must be a list".into()))? {
                    let v = syntax::volume(entry).map_err(bad)?;
                    mounts.push(mount(ctx, name, v, declared.volumes, &mut extras, report)?);
                }
            }
            "networks" => {
                networks_given = true;
                let names: Vec<String> = match value {
                    Value::Array(items) => items.iter().filter_map(scalar).collect(),
                    Value::Object(map) => map.keys().cloned().collect(),
                    _ => return Err(bad("must be a list or a mapping".into())),
                };
                for n in names {
                    let full = declared
                        .networks
                        .get(&n)
                        .cloned()
                        .ok_or_else(|| bad(format!("network '{n}' is not declared")))?;
                    attach.push(full);
                }
            }
            "network_mode" => match scalar(value).unwrap_or_default().as_str() {
                "host" => {
                    host_network = true;
                    report.mapped(
                        name,
                        key,
                        "host: attached to the host network; its ports are the app's own",
                    );
                }
                "bridge" | "default" | "" => {
                    report.mapped(name, key, "bridge: attached to the stack's overlay network instead")
                }
                "none" => report.unsupported(name, key, "none: Swarm services always have a network"),
                other => report.unsupported(
                    name,
                    key,
                    format!("{other}: Swarm services cannot share another container's network"),
                ),
            },
            "restart" => {
                let policy = restart(&scalar(value).unwrap_or_default()).map_err(bad)?;
                restart_from_key = Some(policy);
                report.mapped(name, key, "mapped onto a Swarm restart policy");
            }
            "deploy" => deploy(
                value,
                &mut spec,
                &mut task,
                &mut resources,
                &mut service_labels,
                name,
                report,
            )?,
            "mem_limit" => {
                resources.limits.get_or_insert_with(Limit::default).memory_bytes =
                    Some(syntax::bytes(value).map_err(bad)?);
                report.mapped(name, key, "mapped onto deploy.resources.limits.memory");
            }
            "mem_reservation" => {
                resources
                    .reservations
                    .get_or_insert_with(ResourceObject::default)
                    .memory_bytes = Some(syntax::bytes(value).map_err(bad)?);
                report.mapped(name, key, "mapped onto deploy.resources.reservations.memory");
            }
            "cpus" => {
                resources.limits.get_or_insert_with(Limit::default).nano_cpus =
                    Some(syntax::nano_cpus(value).map_err(bad)?);
                report.mapped(name, key, "mapped onto deploy.resources.limits.cpus");
            }
            "pids_limit" => {
                resources.limits.get_or_insert_with(Limit::default).pids = Some(syntax::count(value).map_err(bad)?);
                report.mapped(name, key, "mapped onto deploy.resources.limits.pids");
            }
            "privileged" => {
                if value.as_bool() == Some(true) || value == "true" {
                    privileged = true;
                    report.unsupported(
                        name,
                        key,
                        "Swarm services cannot run privileged; forced, it runs with all capabilities but no device access",
                    );
                } else {
                    report.ignored(name, key, "false is the default");
                }
            }
            "devices" => report.unsupported(name, key, "Swarm services cannot be given host devices"),
            "device_cgroup_rules" => report.unsupported(name, key, "Swarm services cannot be given host devices"),
            "runtime" => report.unsupported(
                name,
                key,
                "Swarm services cannot choose a container runtime (GPU runtimes)",
            ),
            "gpus" => report.unsupported(name, key, "Swarm services cannot be given GPUs this way"),
            "pid" => report.unsupported(name, key, "Swarm services cannot share the host's process namespace"),
            "userns_mode" | "cgroup_parent" | "cgroup" | "uts" => {
                report.unsupported(name, key, "not supported by Swarm services")
            }
            "build" => {
                if def.contains_key("image") {
                    report.ignored(name, key, "the image is used; CubeOS does not build images");
                } else {
                    report.unsupported(name, key, "CubeOS does not build images and no image is given");
                }
            }
            "env_file" => report.unsupported(
                name,
                key,
                "CubeOS receives only the compose file; put the variables in 'environment'",
            ),
            "extends" => report.unsupported(name, key, "CubeOS does not read other compose files"),
            "configs" => {
                let items = value.as_array().ok_or_else(|| bad("must be a list".into()))?;
                let mut refs = Vec::new();
                for item in items {
                    let (source, target) = match item {
                        Value::Object(m) => {
                            let source = m
                                .get("source")
                                .and_then(scalar)
                                .ok_or_else(|| bad("needs 'source'".into()))?;
                            let target = m.get("target").and_then(scalar).unwrap_or_else(|| format!("/{source}"));
                            (source, target)
                        }
                        other => {
                            let source = scalar(other).ok_or_else(|| bad("items are names or mappings".into()))?;
                            (source.clone(), format!("/{source}"))
                        }
                    };
                    match declared.configs.get(&source) {
                        Some(full) => refs.push(TaskSpecContainerSpecConfigs {
                            file: Some(TaskSpecContainerSpecFile1 {
                                name: Some(target),
                                uid: Some("0".into()),
                                gid: Some("0".into()),
                                mode: Some(0o444),
                            }),
                            config_name: Some(full.clone()),
                            ..Default::default()
                        }),
                        None => report.unsupported(name, key, format!("config '{source}' has no inline content")),
                    }
                }
                container.configs = (!refs.is_empty()).then_some(refs);
            }
            "secrets" => report.unsupported(name, key, "Swarm secrets from files are not supported"),
            "x-casaos" => {}
            k if k.starts_with("x-") => {}
            k => match IGNORED.iter().find(|(ignored, _)| *ignored == k) {
                Some((_, reason)) => report.ignored(name, k, *reason),
                None => report.ignored(name, k, "not a compose key CubeOS knows"),
            },
        }
    }

    if container.image.as_deref().unwrap_or_default().is_empty() && !def.contains_key("build") {
        return Err(invalid(name, "image", "every service needs an image"));
    }
    if privileged && ctx.force {
        container.capability_add.get_or_insert_with(Vec::new).push("ALL".into());
    }
    if task.restart_policy.is_none() {
        task.restart_policy = restart_from_key;
    } else if restart_from_key.is_some() {
        report.ignored(name, "restart", "deploy.restart_policy takes precedence");
    }
    container.labels = Some(container_labels);
    container.mounts = (!mounts.is_empty()).then_some(mounts);
    task.container_spec = Some(container);
    if resources.limits.is_some() || resources.reservations.is_some() {
        task.resources = Some(resources);
    }

    let network_targets = if host_network {
        if networks_given {
            report.ignored(name, "networks", "network_mode: host replaces them");
        }
        vec!["host".to_owned()]
    } else if attach.is_empty() {
        vec![format!("{stack}_default")]
    } else {
        attach
    };
    extras.networks = network_targets.clone();
    task.networks = Some(
        network_targets
            .into_iter()
            .map(|target| NetworkAttachmentConfig {
                aliases: (target != "host").then(|| vec![name.to_owned()]),
                target: Some(target),
                ..Default::default()
            })
            .collect(),
    );

    let mut endpoint_ports = Vec::new();
    for p in port_defs {
        if let Some(ip) = &p.host_ip {
            report.ignored(name, "ports", format!("host_ip {ip}: Swarm publishes on every address"));
        }
        let key = PortKey {
            service: name.to_owned(),
            target: p.target,
            protocol: p.protocol,
        };
        let published = if host_network {
            Some(p.target)
        } else {
            ctx.allocations.get(&key).copied().or(p.published)
        };
        let mode = match (p.mode.as_deref(), ctx.publish_mode) {
            (Some("ingress"), _) | (None, PublishMode::Ingress) => EndpointPortConfigPublishModeEnum::INGRESS,
            _ => EndpointPortConfigPublishModeEnum::HOST,
        };
        extras.ports.push(PublishedPort {
            service: name.to_owned(),
            target: p.target,
            published,
            file_published: p.published,
            protocol: p.protocol,
            host_network,
            description: String::new(),
        });
        if !host_network {
            endpoint_ports.push(EndpointPortConfig {
                protocol: Some(match p.protocol {
                    Protocol::Tcp => EndpointPortConfigProtocolEnum::TCP,
                    Protocol::Udp => EndpointPortConfigProtocolEnum::UDP,
                }),
                target_port: Some(i64::from(p.target)),
                published_port: published.map(i64::from),
                publish_mode: Some(mode),
                ..Default::default()
            });
        }
    }
    if !endpoint_ports.is_empty() {
        spec.endpoint_spec = Some(EndpointSpec {
            ports: Some(endpoint_ports),
            ..spec.endpoint_spec.take().unwrap_or_default()
        });
    }
    if let Some(image) = task.container_spec.as_ref().and_then(|c| c.image.clone()) {
        service_labels.insert("com.docker.stack.image".into(), image);
    }
    spec.labels = Some(service_labels);
    spec.task_template = Some(task);
    if spec.mode.is_none() {
        spec.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        });
    }
    Ok((spec, extras))
}

fn mount(
    ctx: &Context,
    service: &str,
    v: syntax::VolumeMount,
    declared_volumes: &BTreeMap<String, String>,
    extras: &mut Extras,
    report: &mut Report,
) -> Result<Mount, ComposeError> {
    let mut m = Mount {
        target: Some(v.target.clone()),
        read_only: Some(v.read_only),
        ..Default::default()
    };
    match v.kind {
        VolumeKind::Tmpfs => {
            m.typ = Some(MountType::TMPFS);
            m.tmpfs_options = v.tmpfs_size.map(|size| MountTmpfsOptions {
                size_bytes: Some(size),
                ..Default::default()
            });
        }
        VolumeKind::Volume if v.source.is_empty() => m.typ = Some(MountType::VOLUME),
        VolumeKind::Volume => {
            let full = declared_volumes.get(&v.source).cloned().unwrap_or_else(|| {
                report.mapped(
                    service,
                    "volumes",
                    format!("'{}' is not declared at the top; created as a stack volume", v.source),
                );
                format!("{}_{}", ctx.name, v.source)
            });
            m.typ = Some(MountType::VOLUME);
            m.source = Some(full.clone());
            if !extras.named_volumes.contains(&full) {
                extras.named_volumes.push(full);
            }
        }
        VolumeKind::Bind => {
            m.typ = Some(MountType::BIND);
            match paths::map(&v.source, &ctx.name, &ctx.app_data, &ctx.shared_data) {
                None => {
                    return Err(invalid(
                        service,
                        "volumes",
                        format!("host path '{}' climbs out with '..'", v.source),
                    ));
                }
                Some(HostPath::Owned(path)) => {
                    m.source = Some(path.display().to_string());
                    extras.bind_dirs.push(path);
                }
                Some(HostPath::Foreign { path, harmless }) => {
                    m.source = Some(path.display().to_string());
                    m.bind_options = Some(MountBindOptions {
                        create_mountpoint: Some(false),
                        ..Default::default()
                    });
                    if harmless {
                        m.read_only = Some(true);
                        report.mapped(
                            service,
                            "host-path",
                            format!("{} (time zone file, mounted read-only)", path.display()),
                        );
                    } else {
                        report.unsupported(
                            service,
                            "host-path",
                            format!(
                                "{} -> {}: a host path outside CubeOS's data gives the app power over the box",
                                path.display(),
                                v.target
                            ),
                        );
                    }
                }
            }
        }
    }
    Ok(m)
}

fn restart(value: &str) -> Result<TaskSpecRestartPolicy, String> {
    let (condition, attempts) = match value.split_once(':') {
        Some(("on-failure", n)) => (
            TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
            Some(n.parse::<i64>().map_err(|_| format!("'{n}' is not a count"))?),
        ),
        _ => match value {
            "no" | "false" => (TaskSpecRestartPolicyConditionEnum::NONE, None),
            "always" | "unless-stopped" | "" => (TaskSpecRestartPolicyConditionEnum::ANY, None),
            "on-failure" => (TaskSpecRestartPolicyConditionEnum::ON_FAILURE, None),
            other => return Err(format!("'{other}' is not a restart policy")),
        },
    };
    Ok(TaskSpecRestartPolicy {
        condition: Some(condition),
        max_attempts: attempts,
        ..Default::default()
    })
}

fn healthcheck(value: &Value) -> Result<HealthConfig, String> {
    let map = value.as_object().ok_or("must be a mapping")?;
    let mut h = HealthConfig::default();
    if map.get("disable").and_then(Value::as_bool) == Some(true) {
        h.test = Some(vec!["NONE".into()]);
        return Ok(h);
    }
    h.test = match map.get("test") {
        Some(Value::String(s)) => Some(vec!["CMD-SHELL".into(), s.clone()]),
        Some(Value::Array(items)) => Some(items.iter().filter_map(scalar).collect()),
        Some(_) => return Err("test must be a string or a list".into()),
        None => None,
    };
    let d = |k: &str| -> Result<Option<i64>, String> { map.get(k).map(|v| syntax::duration(v).map(nanos)).transpose() };
    h.interval = d("interval")?;
    h.timeout = d("timeout")?;
    h.start_period = d("start_period")?;
    h.start_interval = d("start_interval")?;
    h.retries = map.get("retries").map(syntax::count).transpose()?;
    Ok(h)
}

fn logging(value: &Value) -> Result<TaskSpecLogDriver, String> {
    let map = value.as_object().ok_or("must be a mapping")?;
    Ok(TaskSpecLogDriver {
        name: map.get("driver").and_then(scalar),
        options: map
            .get("options")
            .map(syntax::string_map)
            .transpose()?
            .map(|m| m.into_iter().collect()),
    })
}

fn ulimits(value: &Value) -> Result<Vec<ResourcesUlimits>, String> {
    let map = value.as_object().ok_or("must be a mapping")?;
    map.iter()
        .map(|(name, v)| {
            let (soft, hard) = match v {
                Value::Object(o) => (
                    o.get("soft").map(syntax::count).transpose()?,
                    o.get("hard").map(syntax::count).transpose()?,
                ),
                other => {
                    let n = syntax::count(other)?;
                    (Some(n), Some(n))
                }
            };
            Ok(ResourcesUlimits {
                name: Some(name.clone()),
                soft,
                hard,
            })
        })
        .collect()
}

fn extra_hosts(value: &Value) -> Result<Vec<String>, String> {
    let pairs: Vec<(String, String)> = match value {
        Value::Object(map) => map
            .iter()
            .map(|(h, ip)| (h.clone(), scalar(ip).unwrap_or_default()))
            .collect(),
        other => syntax::string_list(other)?
            .into_iter()
            .map(|e| {
                let (h, ip) = e
                    .split_once('=')
                    .or_else(|| e.split_once(':'))
                    .ok_or(format!("'{e}' is not host:ip"))?;
                Ok((h.to_owned(), ip.to_owned()))
            })
            .collect::<Result<_, String>>()?,
    };
    // Swarm's format is the /etc/hosts one: "IP host".
    Ok(pairs.into_iter().map(|(h, ip)| format!("{ip} {h}")).collect())
}

fn deploy(
    value: &Value,
    spec: &mut ServiceSpec,
    task: &mut TaskSpec,
    resources: &mut TaskSpecResources,
    labels: &mut HashMap<String, String>,
    service: &str,
    report: &mut Report,
) -> Result<(), ComposeError> {
    let map = value
        .as_object()
        .ok_or_else(|| invalid(service, "deploy", "must be a mapping"))?;
    for (key, v) in map {
        let bad = |reason: String| invalid(service, &format!("deploy.{key}"), reason);
        match key.as_str() {
            "replicas" => {
                let replicas = syntax::count(v).map_err(bad)?;
                spec.mode = Some(ServiceSpecMode {
                    replicated: Some(ServiceSpecModeReplicated {
                        replicas: Some(replicas),
                    }),
                    ..Default::default()
                });
            }
            "mode" => match scalar(v).as_deref() {
                Some("global") => {
                    spec.mode = Some(ServiceSpecMode {
                        global: Some(HashMap::new()),
                        ..Default::default()
                    })
                }
                Some("replicated") | None => {}
                Some(other) => return Err(bad(format!("mode '{other}' is not replicated or global"))),
            },
            "labels" => labels.extend(syntax::string_map(v).map_err(bad)?),
            "resources" => {
                let r = v.as_object().ok_or_else(|| bad("must be a mapping".into()))?;
                if let Some(l) = r.get("limits").and_then(Value::as_object) {
                    let limit = resources.limits.get_or_insert_with(Limit::default);
                    if let Some(c) = l.get("cpus") {
                        limit.nano_cpus = Some(syntax::nano_cpus(c).map_err(bad)?);
                    }
                    if let Some(m) = l.get("memory") {
                        limit.memory_bytes = Some(syntax::bytes(m).map_err(bad)?);
                    }
                    if let Some(p) = l.get("pids") {
                        limit.pids = Some(syntax::count(p).map_err(bad)?);
                    }
                }
                if let Some(res) = r.get("reservations").and_then(Value::as_object) {
                    let reservation = resources.reservations.get_or_insert_with(ResourceObject::default);
                    if let Some(c) = res.get("cpus") {
                        reservation.nano_cpus = Some(syntax::nano_cpus(c).map_err(bad)?);
                    }
                    if let Some(m) = res.get("memory") {
                        reservation.memory_bytes = Some(syntax::bytes(m).map_err(bad)?);
                    }
                    if res.contains_key("devices") {
                        report.unsupported(
                            service,
                            "deploy.resources.reservations.devices",
                            "Swarm services cannot reserve devices (GPUs)",
                        );
                    }
                }
            }
            "restart_policy" => {
                let r = v.as_object().ok_or_else(|| bad("must be a mapping".into()))?;
                let condition = match r.get("condition").and_then(scalar).as_deref() {
                    Some("none") => Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    Some("on-failure") => Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
                    Some("any") | None => Some(TaskSpecRestartPolicyConditionEnum::ANY),
                    Some(other) => return Err(bad(format!("condition '{other}' is not none, on-failure or any"))),
                };
                let d = |k: &str| r.get(k).map(|x| syntax::duration(x).map(nanos)).transpose();
                task.restart_policy = Some(TaskSpecRestartPolicy {
                    condition,
                    delay: d("delay").map_err(bad)?,
                    window: d("window").map_err(bad)?,
                    max_attempts: r.get("max_attempts").map(syntax::count).transpose().map_err(bad)?,
                });
            }
            "placement" => {
                let p = v.as_object().ok_or_else(|| bad("must be a mapping".into()))?;
                let mut placement = TaskSpecPlacement::default();
                if let Some(c) = p.get("constraints") {
                    placement.constraints = Some(syntax::string_list(c).map_err(bad)?);
                }
                if let Some(Value::Array(prefs)) = p.get("preferences") {
                    placement.preferences = Some(
                        prefs
                            .iter()
                            .filter_map(|pref| pref.get("spread").and_then(scalar))
                            .map(|s| TaskSpecPlacementPreferences {
                                spread: Some(TaskSpecPlacementSpread {
                                    spread_descriptor: Some(s),
                                }),
                            })
                            .collect(),
                    );
                }
                if let Some(m) = p.get("max_replicas_per_node") {
                    placement.max_replicas = Some(syntax::count(m).map_err(bad)?);
                }
                task.placement = Some(placement);
            }
            "update_config" | "rollback_config" => {
                let u = v.as_object().ok_or_else(|| bad("must be a mapping".into()))?;
                let d = |k: &str| u.get(k).map(|x| syntax::duration(x).map(nanos)).transpose();
                let config = ServiceSpecUpdateConfig {
                    parallelism: u.get("parallelism").map(syntax::count).transpose().map_err(bad)?,
                    delay: d("delay").map_err(bad)?,
                    monitor: d("monitor").map_err(bad)?,
                    max_failure_ratio: u.get("max_failure_ratio").and_then(Value::as_f64),
                    failure_action: match u.get("failure_action").and_then(scalar).as_deref() {
                        Some("continue") => Some(ServiceSpecUpdateConfigFailureActionEnum::CONTINUE),
                        Some("pause") => Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE),
                        Some("rollback") => Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
                        None => None,
                        Some(other) => return Err(bad(format!("failure_action '{other}' is unknown"))),
                    },
                    order: match u.get("order").and_then(scalar).as_deref() {
                        Some("stop-first") => Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
                        Some("start-first") => Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
                        None => None,
                        Some(other) => return Err(bad(format!("order '{other}' is unknown"))),
                    },
                };
                if key == "update_config" {
                    spec.update_config = Some(config);
                } else {
                    report.ignored(service, "deploy.rollback_config", "CubeOS rolls back installs itself");
                }
            }
            "endpoint_mode" => {
                let mode = match scalar(v).as_deref() {
                    Some("vip") => bollard_stubs::models::EndpointSpecModeEnum::VIP,
                    Some("dnsrr") => bollard_stubs::models::EndpointSpecModeEnum::DNSRR,
                    other => return Err(bad(format!("endpoint_mode {other:?} is not vip or dnsrr"))),
                };
                spec.endpoint_spec.get_or_insert_with(EndpointSpec::default).mode = Some(mode);
            }
            other => report.ignored(service, &format!("deploy.{other}"), "not supported by Swarm services"),
        }
    }
    Ok(())
}
