//! What "free" means: not reserved in the store, not bound by a live socket on the
//! host, not published by a Swarm service. Gathering it is I/O; deciding with it
//! is the plain functions below.

use std::collections::{HashMap, HashSet};

use cubeos_contract::api::port_allocator::{RangeStats, SwarmCheck};
use cubeos_contract::models::{AppType, Protocol};

use crate::ranges::Ranges;
use crate::swarm::Published;
use cubeos_kit::procnet::Bound;

/// Everything that holds ports right now.
#[derive(Debug, Default)]
pub struct Occupancy {
    /// Reservations in the store: port -> app.
    pub db: HashMap<(u16, Protocol), String>,
    pub host: Bound,
    /// `None` when Docker could not be asked; see `swarm_error`.
    pub swarm: Option<Published>,
    pub swarm_error: Option<String>,
}

impl Occupancy {
    pub fn taken(&self, port: u16, protocol: Protocol) -> bool {
        let key = (port, protocol);
        self.db.contains_key(&key)
            || self.host.contains_key(&key)
            || self.swarm.as_ref().is_some_and(|s| s.contains_key(&key))
    }

    pub fn swarm_check(&self) -> SwarmCheck {
        match &self.swarm_error {
            None => SwarmCheck::Checked,
            Some(reason) => SwarmCheck::Unavailable { reason: reason.clone() },
        }
    }
}

/// Ports to try for an allocation, best first, and what became of the preferred
/// ones: a preferred port is used when it is allowed for the app's type and free
/// everywhere; then the range from its lowest port. `skip` holds ports already
/// chosen in this allocation.
pub fn candidates(
    ranges: &Ranges,
    app_type: AppType,
    protocol: Protocol,
    preferred: &[u16],
    occupancy: &Occupancy,
) -> (Vec<u16>, Vec<String>) {
    let mut notes = Vec::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &p in preferred {
        if !ranges.allowed(app_type, p) {
            let range = ranges.range(app_type);
            notes.push(format!(
                "preferred port {p} is outside the {} range {}-{} or reserved",
                app_type.as_str(),
                range.start,
                range.end
            ));
        } else if occupancy.taken(p, protocol) {
            notes.push(format!(
                "preferred port {p}/{protocol} is taken ({})",
                describe(p, protocol, occupancy)
            ));
        } else if seen.insert(p) {
            out.push(p);
        }
    }
    for p in ranges.range(app_type).ports() {
        if ranges.allowed(app_type, p) && !occupancy.taken(p, protocol) && seen.insert(p) {
            out.push(p);
        }
    }
    (out, notes)
}

/// Who holds a port, in words.
pub fn describe(port: u16, protocol: Protocol, occupancy: &Occupancy) -> String {
    let key = (port, protocol);
    let mut who = Vec::new();
    if let Some(app) = occupancy.db.get(&key) {
        who.push(format!("app '{app}'"));
    }
    if occupancy.host.contains_key(&key) {
        who.push("a socket on the host".to_owned());
    }
    if let Some(service) = occupancy.swarm.as_ref().and_then(|s| s.get(&key)) {
        who.push(format!("Swarm service '{service}'"));
    }
    who.join(", ")
}

/// In use / free per range, for one protocol.
pub fn stats(ranges: &Ranges, occupancy: &Occupancy, protocol: Protocol) -> Vec<RangeStats> {
    ranges
        .by_type
        .iter()
        .map(|(name, (t, range))| {
            let usable = range.ports().filter(|p| ranges.allowed(*t, *p)).count();
            let in_use = range
                .ports()
                .filter(|p| ranges.allowed(*t, *p) && occupancy.taken(*p, protocol))
                .count();
            RangeStats {
                app_type: (*name).to_owned(),
                start: range.start,
                end: range.end,
                in_use,
                free: usable - in_use,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cubeos_kit::config::PortsConfig;

    fn ranges() -> Ranges {
        let mut c = PortsConfig::default();
        c.user = "6100-6104".into();
        Ranges::from_config(&c).unwrap()
    }

    #[test]
    fn lowest_free_first_and_preferred_when_free() {
        let mut occ = Occupancy::default();
        occ.db.insert((6100, Protocol::Tcp), "a".into());
        occ.host.insert((6101, Protocol::Tcp), vec![1]);
        let (c, notes) = candidates(&ranges(), AppType::User, Protocol::Tcp, &[], &occ);
        assert_eq!(c, [6102, 6103, 6104]);
        assert!(notes.is_empty());
        let (c, _) = candidates(&ranges(), AppType::User, Protocol::Udp, &[], &occ);
        assert_eq!(c[0], 6100, "udp is a separate space");
        let (c, notes) = candidates(&ranges(), AppType::User, Protocol::Tcp, &[6104], &occ);
        assert_eq!(c, [6104, 6102, 6103]);
        assert!(notes.is_empty());
    }

    #[test]
    fn preferred_taken_or_outside_falls_back_and_says_why() {
        let mut occ = Occupancy::default();
        occ.db.insert((6100, Protocol::Tcp), "a".into());
        occ.swarm = Some([((6103, Protocol::Tcp), "other_web".to_owned())].into());
        let (c, notes) = candidates(&ranges(), AppType::User, Protocol::Tcp, &[6100, 6103, 80, 6001], &occ);
        assert_eq!(c, [6101, 6102, 6104]);
        assert!(notes[0].contains("app 'a'"), "{notes:?}");
        assert!(notes[1].contains("Swarm service 'other_web'"), "{notes:?}");
        assert!(notes[2].contains("outside"), "{notes:?}");
        assert!(notes[3].contains("outside"), "{notes:?}");
    }

    #[test]
    fn stats_count_every_source() {
        let mut occ = Occupancy::default();
        occ.db.insert((6100, Protocol::Tcp), "a".into());
        occ.host.insert((6104, Protocol::Tcp), vec![1]);
        let s = stats(&ranges(), &occ, Protocol::Tcp);
        let user = s.iter().find(|r| r.app_type == "user").unwrap();
        assert_eq!((user.in_use, user.free), (2, 3));
    }
}
