//! Port ranges per app type, and the ports user apps never get.

use std::collections::{BTreeMap, BTreeSet};

use cubeos_contract::models::AppType;
use cubeos_kit::config::PortsConfig;
use serde::Serialize;

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    /// `"6100-6999"` or a single `"5000"`.
    pub fn parse(s: &str) -> Result<PortRange, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("'{p}' is not a port"))
        };
        let (start, end) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if start > end {
            return Err(format!("range '{s}' runs backwards"));
        }
        Ok(PortRange { start, end })
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }

    // A range holds at least one port (start <= end is checked at parse): never empty.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> {
        self.start..=self.end
    }
}

/// The configured ranges.
#[derive(Debug, Clone)]
pub struct Ranges {
    pub by_type: BTreeMap<&'static str, (AppType, PortRange)>,
    /// Never handed to user apps, even inside the user range.
    pub reserved: BTreeSet<u16>,
}

impl Ranges {
    pub fn from_config(config: &PortsConfig) -> Result<Ranges, String> {
        let mut by_type = BTreeMap::new();
        for (t, spec) in [
            (AppType::System, &config.system),
            (AppType::Platform, &config.platform),
            (AppType::Network, &config.network),
            (AppType::Ai, &config.ai),
            (AppType::User, &config.user),
        ] {
            let range = PortRange::parse(spec).map_err(|e| format!("ports.{}: {e}", t.as_str()))?;
            by_type.insert(t.as_str(), (t, range));
        }
        Ok(Ranges {
            by_type,
            reserved: config.reserved.iter().copied().collect(),
        })
    }

    pub fn range(&self, t: AppType) -> PortRange {
        self.by_type[t.as_str()].1
    }

    /// The type whose range holds `port`.
    pub fn type_of(&self, port: u16) -> Option<&'static str> {
        self.by_type
            .iter()
            .find(|(_, (_, r))| r.contains(port))
            .map(|(name, _)| *name)
    }

    /// Whether an app of type `t` may hold `port`: inside its range, and for user
    /// apps not reserved.
    pub fn allowed(&self, t: AppType, port: u16) -> bool {
        self.range(t).contains(port) && !(t == AppType::User && self.reserved.contains(&port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_membership() {
        assert_eq!(PortRange::parse("6100-6999").unwrap().len(), 900);
        assert_eq!(PortRange::parse("5000").unwrap(), PortRange { start: 5000, end: 5000 });
        for bad in ["", "0-5", "9-1", "a-b", "70000"] {
            assert!(PortRange::parse(bad).is_err(), "{bad}");
        }
        let mut config = PortsConfig::default();
        config.user = "6100-6110".into();
        config.reserved.push(6105);
        let r = Ranges::from_config(&config).unwrap();
        assert!(r.allowed(AppType::User, 6104));
        assert!(!r.allowed(AppType::User, 6105), "reserved");
        assert!(!r.allowed(AppType::User, 6200), "outside");
        assert!(r.allowed(AppType::System, 6001), "reserved ports are for system apps");
        assert_eq!(r.type_of(6015), Some("platform"));
    }
}
