//! dnsmasq: a hosts file this service owns, read by dnsmasq through `--addn-hosts`
//! and re-read on SIGHUP. Optionally a conf file with `address=/<domain>/<gateway>`,
//! so that every name under the domain resolves (dnsmasq reads it at start).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cubeos_kit::config::DnsmasqConfig;
use cubeos_kit::host::Host;

use crate::backend::{BackendError, MARKER, Outcome};
use crate::desired::Desired;
use crate::plan::plan;

pub struct Dnsmasq {
    /// Sends dnsmasq its SIGHUP (`kill -HUP`).
    host: Arc<dyn Host>,
    hosts_file: PathBuf,
    pid_file: PathBuf,
    wildcard_file: Option<PathBuf>,
    /// The hosts file changed and dnsmasq has not been told since: a failed
    /// SIGHUP is retried on the next pass even though the file then matches.
    /// True at start, since an earlier run may have stopped in between.
    reload_pending: bool,
}

impl Dnsmasq {
    pub fn new(config: &DnsmasqConfig, host: Arc<dyn Host>) -> Dnsmasq {
        Dnsmasq {
            host,
            hosts_file: config.hosts_file.clone(),
            pid_file: config.pid_file.clone(),
            wildcard_file: config.wildcard_file.clone(),
            reload_pending: true,
        }
    }

    pub async fn sync(&mut self, want: &Desired) -> Result<Outcome, BackendError> {
        let current = tokio::fs::read_to_string(&self.hosts_file).await.unwrap_or_default();
        let have = parse_hosts(&current);
        let changes = plan(&want.records, &have);
        let mut outcome = Outcome {
            created: changes.create.len(),
            updated: changes.update.len(),
            deleted: changes.delete.len(),
            ..Outcome::default()
        };
        // A planned change always changes the file; a file changed by hand (say,
        // reformatted) is rewritten too.
        let rendered = render_hosts(&want.records);
        if rendered != current {
            write(&self.hosts_file, &rendered).await?;
            self.reload_pending = true;
        }
        if let (Some(path), Some(net)) = (&self.wildcard_file, &want.network) {
            let line = format!("{MARKER}\naddress=/{}/{}\n", net.domain, net.gateway);
            if tokio::fs::read_to_string(path).await.unwrap_or_default() != line {
                write(path, &line).await?;
            }
        }
        let pid = self.running_pid().await?;
        if self.reload_pending {
            crate::backend::run_command(&*self.host, "kill", &["kill".into(), "-HUP".into(), pid.to_string()])
                .await
                .map_err(|e| BackendError::Unreachable("dnsmasq", e))?;
            self.reload_pending = false;
        }
        outcome.actual = want.records.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        Ok(outcome)
    }

    /// dnsmasq's pid, when it is running.
    async fn running_pid(&self) -> Result<u32, BackendError> {
        let text = tokio::fs::read_to_string(&self.pid_file)
            .await
            .map_err(|e| BackendError::Unreachable("dnsmasq", format!("{}: {e}", self.pid_file.display())))?;
        let pid: u32 = text
            .trim()
            .parse()
            .map_err(|_| BackendError::Unreachable("dnsmasq", "its pid file is not a pid".into()))?;
        if Path::new(&format!("/proc/{pid}")).exists() {
            Ok(pid)
        } else {
            Err(BackendError::Unreachable(
                "dnsmasq",
                format!("process {pid} is not running"),
            ))
        }
    }
}

/// The hosts file: one `address name` line per record, sorted, after the marker.
pub fn render_hosts(records: &BTreeMap<String, IpAddr>) -> String {
    let mut out = format!("{MARKER}\n");
    for (name, ip) in records {
        out.push_str(&format!("{ip} {name}\n"));
    }
    out
}

/// Reads a hosts file back (comments and malformed lines skipped).
pub fn parse_hosts(text: &str) -> BTreeMap<String, IpAddr> {
    text.lines()
        .filter_map(hosts_line)
        .flat_map(|(ip, names)| names.map(move |name| (name.to_owned(), ip)))
        .collect()
}

/// One hosts line — `address name...`, a `#` starting a comment — as its address
/// and names; `None` for a comment, blank or malformed line. Pi-hole's
/// `dns.hosts` entries have the same form.
pub fn hosts_line(line: &str) -> Option<(IpAddr, std::str::SplitWhitespace<'_>)> {
    let data = line.split('#').next().unwrap_or_default();
    let mut words = data.split_whitespace();
    let ip = words.next()?.parse().ok()?;
    Some((ip, words))
}

/// Replaces a file atomically (a reader never sees half of it).
pub async fn write(path: &Path, content: &str) -> Result<(), BackendError> {
    let io = |e: std::io::Error| BackendError::Io("files", format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
    }
    let tmp = path.with_extension("cubeos-tmp");
    tokio::fs::write(&tmp, content).await.map_err(io)?;
    tokio::fs::rename(&tmp, path).await.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_round_trip() {
        let records = BTreeMap::from([
            ("a.cubeos.cube".to_string(), "10.42.24.1".parse().unwrap()),
            ("cubeos.cube".to_string(), "10.42.24.1".parse().unwrap()),
        ]);
        let text = render_hosts(&records);
        assert!(text.starts_with(MARKER));
        assert_eq!(parse_hosts(&text), records);
        assert!(parse_hosts("garbage\n10.0.0.1\nnot-an-ip x\n# 10.0.0.2 c\n").is_empty());
        assert_eq!(
            parse_hosts("10.0.0.3 d.cube # says who\n")
                .into_keys()
                .collect::<Vec<_>>(),
            ["d.cube"]
        );
    }
}
