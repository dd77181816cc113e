//! The short and long syntaxes of compose values, each normalised into one form.
//! Every function takes the JSON value as written and returns a typed value or the
//! reason it is malformed.

use std::collections::BTreeMap;
use std::time::Duration;

use cubeos_contract::models::Protocol;
use serde_json::Value;

/// A malformed value; the caller adds where it was.
pub type SyntaxResult<T> = Result<T, String>;

/// Most ports one range entry may expand to.
pub const MAX_RANGE: u32 = 1000;

/// A string, or a number or bool written where a string is expected.
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `command` / `entrypoint`: a list, or a string split the way a shell would
/// (quotes honoured, no expansion).
pub fn command(v: &Value) -> SyntaxResult<Vec<String>> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| scalar(i).ok_or_else(|| "list items must be strings".into()))
            .collect(),
        Value::String(s) => shell_words(s),
        Value::Null => Ok(Vec::new()),
        _ => Err("must be a string or a list of strings".into()),
    }
}

fn shell_words(s: &str) -> SyntaxResult<Vec<String>> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => current.push(c),
                            Some(c) => {
                                current.push('\\');
                                current.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => current.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    current.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

/// `environment`: a list of `KEY=VALUE` / `KEY`, or a mapping. A key without a value
/// (`KEY`, `KEY:` with null) takes its value from `vars` when set, and is dropped
/// otherwise, as compose does.
pub fn environment(v: &Value, vars: &BTreeMap<String, String>) -> SyntaxResult<Vec<String>> {
    let mut out = Vec::new();
    let mut push = |key: &str, value: Option<String>| -> SyntaxResult<()> {
        if key.is_empty() || key.contains('\0') {
            return Err(format!("invalid variable name '{key}'"));
        }
        if let Some(value) = value.or_else(|| vars.get(key).cloned()) {
            out.push(format!("{key}={value}"))
        }
        Ok(())
    };
    match v {
        Value::Array(items) => {
            for item in items {
                let s = scalar(item).ok_or("list items must be KEY=VALUE strings")?;
                match s.split_once('=') {
                    Some((k, val)) => push(k, Some(val.to_owned()))?,
                    None => push(&s, None)?,
                }
            }
        }
        Value::Object(map) => {
            for (k, val) in map {
                let val = match val {
                    Value::Null => None,
                    other => Some(scalar(other).ok_or_else(|| format!("{k}: value must be a string or number"))?),
                };
                push(k, val)?;
            }
        }
        Value::Null => {}
        _ => return Err("must be a list or a mapping".into()),
    }
    Ok(out)
}

/// `labels`, `sysctls`, `driver_opts`: a list of `k=v` or a mapping.
pub fn string_map(v: &Value) -> SyntaxResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match v {
        Value::Array(items) => {
            for item in items {
                let s = scalar(item).ok_or("list items must be key=value strings")?;
                let (k, val) = s.split_once('=').unwrap_or((s.as_str(), ""));
                out.insert(k.to_owned(), val.to_owned());
            }
        }
        Value::Object(map) => {
            for (k, val) in map {
                out.insert(
                    k.clone(),
                    if val.is_null() {
                        String::new()
                    } else {
                        scalar(val).ok_or_else(|| format!("{k}: value must be a string"))?
                    },
                );
            }
        }
        Value::Null => {}
        _ => return Err("must be a list or a mapping".into()),
    }
    Ok(out)
}

/// A string or a list of strings (`cap_add`, `dns`, `tmpfs`, ...).
pub fn string_list(v: &Value) -> SyntaxResult<Vec<String>> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| scalar(i).ok_or_else(|| "list items must be strings".into()))
            .collect(),
        Value::Null => Ok(Vec::new()),
        other => scalar(other)
            .map(|s| vec![s])
            .ok_or_else(|| "must be a string or a list".into()),
    }
}

/// A published port mapping, after range expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub target: u16,
    pub published: Option<u16>,
    pub protocol: Protocol,
    /// `host` or `ingress` when the file says; otherwise the configured default.
    pub mode: Option<String>,
    pub host_ip: Option<String>,
}

fn port_number(s: &str) -> SyntaxResult<u16> {
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .map(|p| p as u16)
        .ok_or_else(|| format!("'{s}' is not a port (1-65535)"))
}

fn port_range(s: &str) -> SyntaxResult<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port_number(a)?, port_number(b)?);
            if a > b {
                return Err(format!("range '{s}' runs backwards"));
            }
            if u32::from(b - a) >= MAX_RANGE {
                return Err(format!("range '{s}' is wider than {MAX_RANGE} ports"));
            }
            Ok((a, b))
        }
        None => {
            let p = port_number(s)?;
            Ok((p, p))
        }
    }
}

fn protocol(s: &str) -> SyntaxResult<Protocol> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" | "" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!("protocol '{other}' is not supported (tcp, udp)")),
    }
}

/// One entry of `ports`: `"80"`, `"8080:80"`, `"127.0.0.1:8080:80/udp"`,
/// `"8000-8010:8000-8010"`, `80` (a number), or the long syntax
/// `{target, published, protocol, mode, host_ip}`.
pub fn ports(v: &Value) -> SyntaxResult<Vec<PortMapping>> {
    match v {
        Value::Number(_) => short_port(&scalar(v).unwrap_or_default()),
        Value::String(s) => short_port(s),
        Value::Object(map) => {
            let target = map.get("target").and_then(scalar).ok_or("long syntax needs 'target'")?;
            let (t0, t1) = port_range(&target)?;
            let published = match map.get("published").and_then(scalar) {
                Some(p) if !p.is_empty() => Some(port_range(&p)?),
                _ => None,
            };
            let proto = protocol(&map.get("protocol").and_then(scalar).unwrap_or_default())?;
            let mode = map.get("mode").and_then(scalar);
            if let Some(m) = &mode
                && m != "host"
                && m != "ingress"
            {
                return Err(format!("mode '{m}' is not host or ingress"));
            }
            let host_ip = map.get("host_ip").and_then(scalar).filter(|s| !s.is_empty());
            expand(t0, t1, published, proto, mode, host_ip)
        }
        _ => Err("a port is a string, a number or a mapping".into()),
    }
}

fn short_port(s: &str) -> SyntaxResult<Vec<PortMapping>> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, p)) => (spec, protocol(p)?),
        None => (s, Protocol::Tcp),
    };
    // IPv6 host addresses come in brackets: "[::1]:8080:80".
    let (host_ip, rest) = if let Some(stripped) = spec.strip_prefix('[') {
        let (ip, rest) = stripped
            .split_once("]:")
            .ok_or_else(|| format!("malformed port '{s}'"))?;
        (Some(ip.to_owned()), rest)
    } else {
        (None, spec)
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, published, target) = match (host_ip, parts.as_slice()) {
        (None, [target]) => (None, None, *target),
        (h, [published, target]) => (h, Some(*published), *target),
        (None, [ip, published, target]) => (Some((*ip).to_owned()), Some(*published), *target),
        _ => return Err(format!("malformed port '{s}'")),
    };
    let (t0, t1) = port_range(target)?;
    let published = match published {
        Some(p) if !p.is_empty() => Some(port_range(p)?),
        _ => None,
    };
    expand(t0, t1, published, proto, None, host_ip.filter(|h| !h.is_empty()))
}

fn expand(
    t0: u16,
    t1: u16,
    published: Option<(u16, u16)>,
    protocol: Protocol,
    mode: Option<String>,
    host_ip: Option<String>,
) -> SyntaxResult<Vec<PortMapping>> {
    let count = t1 - t0;
    if let Some((p0, p1)) = published
        && p1 - p0 != count
        && p0 != p1
    {
        return Err(format!(
            "published range {p0}-{p1} and target range {t0}-{t1} differ in size"
        ));
    }
    Ok((0..=count)
        .map(|i| PortMapping {
            target: t0 + i,
            published: published.map(|(p0, p1)| if p0 == p1 && count > 0 { p0 } else { p0 + i }),
            protocol,
            mode: mode.clone(),
            host_ip: host_ip.clone(),
        })
        .collect())
}

/// One entry of `volumes`, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub kind: VolumeKind,
    /// Host path (bind), volume name (volume), empty (anonymous volume, tmpfs).
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub tmpfs_size: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    Bind,
    Volume,
    Tmpfs,
}

/// `"/host:/in[:ro]"`, `"name:/in"`, `"/in"` (anonymous), `"./rel:/in"`, or the long
/// syntax `{type, source, target, read_only, tmpfs: {size}}`.
pub fn volume(v: &Value) -> SyntaxResult<VolumeMount> {
    match v {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            let (source, target, mode) = match parts.as_slice() {
                [target] => ("", *target, ""),
                [source, target] => (*source, *target, ""),
                [source, target, mode] => (*source, *target, *mode),
                _ => return Err(format!("malformed volume '{s}'")),
            };
            let read_only = mode.split(',').any(|m| m == "ro");
            let kind = if source.is_empty() {
                VolumeKind::Volume
            } else if is_path(source) {
                VolumeKind::Bind
            } else {
                VolumeKind::Volume
            };
            check_target(target)?;
            Ok(VolumeMount {
                kind,
                source: source.to_owned(),
                target: target.to_owned(),
                read_only,
                tmpfs_size: None,
            })
        }
        Value::Object(map) => {
            let kind = match map.get("type").and_then(scalar).as_deref() {
                Some("bind") => VolumeKind::Bind,
                Some("volume") | None => VolumeKind::Volume,
                Some("tmpfs") => VolumeKind::Tmpfs,
                Some(other) => return Err(format!("volume type '{other}' is not supported (bind, volume, tmpfs)")),
            };
            let source = map.get("source").and_then(scalar).unwrap_or_default();
            let target = map.get("target").and_then(scalar).ok_or("long syntax needs 'target'")?;
            check_target(&target)?;
            if kind == VolumeKind::Bind && source.is_empty() {
                return Err("a bind mount needs a 'source'".into());
            }
            let read_only = map
                .get("read_only")
                .is_some_and(|r| r == &Value::Bool(true) || r == "true");
            let tmpfs_size = match map.get("tmpfs").and_then(|t| t.get("size")) {
                Some(size) => Some(bytes(size)?),
                None => None,
            };
            Ok(VolumeMount {
                kind,
                source,
                target,
                read_only,
                tmpfs_size,
            })
        }
        _ => Err("a volume is a string or a mapping".into()),
    }
}

fn is_path(s: &str) -> bool {
    s.starts_with('/') || s.starts_with('.') || s.starts_with('~')
}

fn check_target(target: &str) -> SyntaxResult<()> {
    if !target.starts_with('/') {
        return Err(format!("container path '{target}' must be absolute"));
    }
    Ok(())
}

/// A duration: `1m30s`, `10s`, `500ms`, `1h`, or a number of seconds.
pub fn duration(v: &Value) -> SyntaxResult<Duration> {
    let s = scalar(v).ok_or("a duration is a string like '30s'")?;
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Ok(Duration::from_secs_f64(secs.min(1e9)));
    }
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let unit_end = rest[num_end..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| num_end + i);
        let value: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("malformed duration '{s}'"))?;
        let unit = match &rest[num_end..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("malformed duration '{s}'")),
        };
        total += Duration::from_secs_f64((value * unit).min(1e9));
        rest = &rest[unit_end..];
    }
    Ok(total)
}

/// A byte size: `512m`, `1g`, `1024M`, `100kb`, or a number of bytes.
pub fn bytes(v: &Value) -> SyntaxResult<i64> {
    let s = scalar(v)
        .ok_or("a size is a string like '512m'")?
        .trim()
        .to_ascii_lowercase();
    let num_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let value: f64 = s[..num_end].parse().map_err(|_| format!("malformed size '{s}'"))?;
    let unit: f64 = match s[num_end..].trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024f64.powi(4),
        other => return Err(format!("unknown size unit '{other}'")),
    };
    let bytes = value * unit;
    if !bytes.is_finite() || bytes < 0.0 || bytes > i64::MAX as f64 {
        return Err(format!("size '{s}' is out of range"));
    }
    Ok(bytes as i64)
}

/// CPUs as a decimal (`0.5`, `"2"`) to Docker's nano-CPUs.
pub fn nano_cpus(v: &Value) -> SyntaxResult<i64> {
    let s = scalar(v).ok_or("cpus is a number like 0.5")?;
    let cpus: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number of CPUs"))?;
    if !(0.0..=1024.0).contains(&cpus) {
        return Err(format!("{cpus} CPUs is out of range"));
    }
    Ok((cpus * 1e9) as i64)
}

/// A non-negative integer (replicas, retries, ...).
pub fn count(v: &Value) -> SyntaxResult<i64> {
    scalar(v)
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|n| (0..=1_000_000).contains(n))
        .ok_or_else(|| format!("{v} is not a count"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: Value) -> Vec<(u16, Option<u16>, Protocol)> {
        ports(&v)
            .unwrap()
            .into_iter()
            .map(|m| (m.target, m.published, m.protocol))
            .collect()
    }

    #[test]
    fn ports_in_every_syntax() {
        assert_eq!(p(json!("80")), [(80, None, Protocol::Tcp)]);
        assert_eq!(p(json!(80)), [(80, None, Protocol::Tcp)]);
        assert_eq!(p(json!("8080:80")), [(80, Some(8080), Protocol::Tcp)]);
        assert_eq!(p(json!("53:53/udp")), [(53, Some(53), Protocol::Udp)]);
        assert_eq!(p(json!("127.0.0.1:8080:80")), [(80, Some(8080), Protocol::Tcp)]);
        assert_eq!(
            ports(&json!("127.0.0.1:8080:80")).unwrap()[0].host_ip.as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            ports(&json!("[::1]:8080:80")).unwrap()[0].host_ip.as_deref(),
            Some("::1")
        );
        assert_eq!(
            p(json!("8000-8002:9000-9002")),
            [
                (9000, Some(8000), Protocol::Tcp),
                (9001, Some(8001), Protocol::Tcp),
                (9002, Some(8002), Protocol::Tcp)
            ]
        );
        assert_eq!(p(json!("6881:6881/udp")), [(6881, Some(6881), Protocol::Udp)]);
        assert_eq!(
            p(json!({"target": 4533, "published": "4533", "protocol": "tcp"})),
            [(4533, Some(4533), Protocol::Tcp)]
        );
        assert_eq!(
            p(json!({"target": "53", "protocol": "udp", "mode": "host"})),
            [(53, None, Protocol::Udp)]
        );
        for bad in [
            json!("70000:80"),
            json!("0"),
            json!("a:b"),
            json!("80/sctp"),
            json!("1-5000"),
            json!("9-1"),
            json!([1]),
            json!({"published": 80}),
            json!("1:2:3:4"),
        ] {
            assert!(ports(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes_in_every_syntax() {
        let v = volume(&json!("/DATA/AppData/x/config:/config:ro")).unwrap();
        assert_eq!(
            (v.kind, v.source.as_str(), v.target.as_str(), v.read_only),
            (VolumeKind::Bind, "/DATA/AppData/x/config", "/config", true)
        );
        let v = volume(&json!("db:/var/lib/db")).unwrap();
        assert_eq!((v.kind, v.source.as_str()), (VolumeKind::Volume, "db"));
        let v = volume(&json!("/anon")).unwrap();
        assert_eq!((v.kind, v.source.as_str()), (VolumeKind::Volume, ""));
        let v = volume(&json!({"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": "64m"}})).unwrap();
        assert_eq!((v.kind, v.tmpfs_size), (VolumeKind::Tmpfs, Some(64 << 20)));
        let v = volume(&json!({"type": "bind", "source": "/a", "target": "/b", "read_only": true})).unwrap();
        assert!(v.read_only);
        for bad in [
            json!("a:relative"),
            json!({"type": "bind", "target": "/x"}),
            json!({"type": "npipe", "target": "/x"}),
            json!(5),
        ] {
            assert!(volume(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn environment_as_list_or_map() {
        let vars: BTreeMap<String, String> = [("TZ".to_owned(), "Europe/Oslo".to_owned())].into();
        assert_eq!(
            environment(&json!(["A=1", "B=x=y", "TZ", "MISSING"]), &vars).unwrap(),
            ["A=1", "B=x=y", "TZ=Europe/Oslo"]
        );
        assert_eq!(
            environment(&json!({"A": 1, "B": true, "C": "", "TZ": null}), &vars).unwrap(),
            ["A=1", "B=true", "C=", "TZ=Europe/Oslo"]
        );
        assert!(environment(&json!({"A": {"nested": 1}}), &vars).is_err());
    }

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(
            command(&json!("sh -c 'echo hi there'")).unwrap(),
            ["sh", "-c", "echo hi there"]
        );
        assert_eq!(command(&json!("a \"b c\" d\\ e")).unwrap(), ["a", "b c", "d e"]);
        assert_eq!(command(&json!(["x", 1])).unwrap(), ["x", "1"]);
        assert!(command(&json!("'open")).is_err());
    }

    #[test]
    fn units() {
        assert_eq!(duration(&json!("1m30s")).unwrap(), Duration::from_secs(90));
        assert_eq!(duration(&json!("500ms")).unwrap(), Duration::from_millis(500));
        assert_eq!(duration(&json!(10)).unwrap(), Duration::from_secs(10));
        assert!(duration(&json!("soon")).is_err());
        assert_eq!(bytes(&json!("1024M")).unwrap(), 1 << 30);
        assert_eq!(bytes(&json!("512m")).unwrap(), 512 << 20);
        assert!(bytes(&json!("5 parsecs")).is_err());
        assert_eq!(nano_cpus(&json!("0.5")).unwrap(), 500_000_000);
        assert!(nano_cpus(&json!(-1)).is_err());
    }
}
