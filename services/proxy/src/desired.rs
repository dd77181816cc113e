//! What DNS and the reverse proxy should hold: a pure function of the apps' names
//! (registry state) and the system's domain and gateway.

use std::collections::BTreeMap;
use std::net::IpAddr;

use cubeos_contract::models::{AppRecord, Fqdn};
use cubeos_contract::validate;
use serde::Serialize;

/// Hosts every box serves whatever apps it runs: `(label, port)`, the empty label
/// being the domain itself (the dashboard, on `dashboard.listen`'s port).
pub fn core_hosts(dashboard_port: u16) -> [(&'static str, u16); 4] {
    [("", dashboard_port), ("api", 6010), ("pihole", 6001), ("npm", 81)]
}

/// Where the reverse proxy sends one name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub host: String,
    pub port: u16,
    pub ssl: bool,
    pub websocket: bool,
}

/// The system's domain and the address every name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub domain: String,
    pub gateway: IpAddr,
}

impl Network {
    /// From `cubeos/state/system` (`domain`, `gateway_ip`); `None` until both parse.
    /// The domain becomes file names and configuration lines, so only a valid
    /// domain name is taken.
    pub fn from_system(system: &BTreeMap<String, String>) -> Option<Network> {
        let domain = validate::fqdn("domain", system.get("domain")?.trim()).ok()?;
        let gateway = system.get("gateway_ip")?.trim().parse().ok()?;
        Some(Network { domain, gateway })
    }
}

/// Everything both backends should hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// name -> address.
    pub records: BTreeMap<String, IpAddr>,
    /// name -> backend.
    pub routes: BTreeMap<String, Route>,
    /// Names that are registry rows, with the NPM proxy id the registry has for them.
    pub rows: BTreeMap<String, Option<i64>>,
    pub network: Option<Network>,
}

impl Desired {
    /// The same names, addresses and backends; the NPM ids the registry holds may
    /// differ (they are this service's own bookkeeping).
    pub fn same_names(&self, other: &Desired) -> bool {
        (&self.records, &self.routes, &self.network) == (&other.records, &other.routes, &other.network)
    }
}

/// What of a name row decides DNS and the proxy: the name, its port and TLS.
pub fn routing(rows: &[Fqdn]) -> Vec<(&str, i64, bool)> {
    rows.iter()
        .map(|r| (r.fqdn.as_str(), r.backend_port, r.ssl_enabled))
        .collect()
}

/// Builds the desired state. Names outside the domain are served too (a row may
/// name any valid fqdn); the core hosts are always there.
pub fn desired<'a>(
    apps: impl IntoIterator<Item = &'a AppRecord>,
    network: &Network,
    backend_host: &str,
    dashboard_port: u16,
) -> Desired {
    let mut want = Desired {
        network: Some(network.clone()),
        ..Desired::default()
    };
    for (label, port) in core_hosts(dashboard_port) {
        let name = if label.is_empty() {
            network.domain.clone()
        } else {
            format!("{label}.{}", network.domain)
        };
        want.records.insert(name.clone(), network.gateway);
        want.routes.insert(
            name,
            Route {
                host: backend_host.to_owned(),
                port,
                ssl: false,
                websocket: true,
            },
        );
    }
    for record in apps {
        for row in &record.fqdns {
            // Rows are validated by the registry; one that is not a name is never
            // written into a file name or configuration line here either.
            let (Ok(port), Ok(_)) = (u16::try_from(row.backend_port), validate::fqdn("fqdn", &row.fqdn)) else {
                continue;
            };
            want.records.insert(row.fqdn.clone(), network.gateway);
            want.routes.insert(
                row.fqdn.clone(),
                Route {
                    host: backend_host.to_owned(),
                    port,
                    ssl: row.ssl_enabled,
                    websocket: true,
                },
            );
            want.rows.insert(row.fqdn.clone(), row.npm_proxy_id);
        }
    }
    want
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, fqdns: &[(&str, i64)]) -> AppRecord {
        let mut record: AppRecord = serde_json::from_value(serde_json::json!({
            "id": 1, "name": name, "display_name": name, "description": "", "type": "user",
            "category": "other", "source": "custom", "store_id": null, "compose_path": "",
            "data_path": "", "enabled": true, "tor_enabled": false, "vpn_enabled": false,
            "icon_url": "", "version": "", "homepage": "", "created_at": "", "updated_at": "",
            "ports": [], "fqdns": []
        }))
        .unwrap();
        record.fqdns = fqdns
            .iter()
            .map(|(f, p)| Fqdn {
                id: 1,
                app_id: 1,
                fqdn: f.to_string(),
                subdomain: f.split('.').next().unwrap().into(),
                backend_port: *p,
                ssl_enabled: false,
                npm_proxy_id: None,
                created_at: String::new(),
            })
            .collect();
        record
    }

    #[test]
    fn core_hosts_and_every_row() {
        let system = BTreeMap::from([
            ("domain".to_string(), "cubeos.cube".to_string()),
            ("gateway_ip".to_string(), "10.42.24.1".to_string()),
        ]);
        let net = Network::from_system(&system).unwrap();
        let apps = [app("wiki", &[("wiki.cubeos.cube", 6100)])];
        let want = desired(&apps, &net, "127.0.0.1", 6011);
        assert_eq!(want.records.len(), core_hosts(6011).len() + 1);
        assert_eq!(want.records["cubeos.cube"], net.gateway);
        assert_eq!(want.routes["wiki.cubeos.cube"].port, 6100);
        assert_eq!(want.routes["cubeos.cube"].port, 6011);
        let moved = desired(&apps, &net, "127.0.0.1", 7011);
        assert_eq!(moved.routes["cubeos.cube"].port, 7011, "the dashboard where it listens");
        assert_eq!(want.rows.keys().collect::<Vec<_>>(), ["wiki.cubeos.cube"]);
        assert!(Network::from_system(&BTreeMap::new()).is_none());
    }

    #[test]
    fn a_domain_or_row_that_is_not_a_name_is_never_used() {
        for bad in ["../../etc", "cube os.cube", "x.cube\naddress=/#/6.6.6.6", ""] {
            let system = BTreeMap::from([
                ("domain".to_string(), bad.to_string()),
                ("gateway_ip".to_string(), "10.42.24.1".to_string()),
            ]);
            assert!(Network::from_system(&system).is_none(), "{bad:?}");
        }
        let system = BTreeMap::from([
            ("domain".to_string(), "CubeOS.cube".to_string()),
            ("gateway_ip".to_string(), "10.42.24.1".to_string()),
        ]);
        let net = Network::from_system(&system).unwrap();
        assert_eq!(net.domain, "cubeos.cube");
        let apps = [app("evil", &[("../evil.cubeos.cube", 6100), ("ok.cubeos.cube", 6101)])];
        let want = desired(&apps, &net, "127.0.0.1", 6011);
        assert_eq!(want.rows.keys().collect::<Vec<_>>(), ["ok.cubeos.cube"]);
    }
}
