//! A service's liveness, as its retained `cubeos/svc/<service>/status` says it.
//!
//! A service's bus connection announces `starting` as soon as it connects, `online`
//! once the service takes commands, and leaves `offline` as its last will. `cubeos up`
//! connects every service before starting the first, so a client that arrives while
//! the system boots sees `starting` for the services still on their way, rather than
//! nothing, and can wait for them instead of taking silence for an answer.

/// One of the three words a liveness topic holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Connected, not taking commands yet.
    Starting,
    /// Taking commands.
    Online,
    /// Gone: the last will, or a clean stop.
    Offline,
}

impl Liveness {
    /// The payload on the wire.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Liveness::Starting => b"starting",
            Liveness::Online => b"online",
            Liveness::Offline => b"offline",
        }
    }

    /// Reads a payload; anything else (an empty retained clear, say) is `None`.
    pub fn parse(payload: &[u8]) -> Option<Liveness> {
        match payload {
            b"starting" => Some(Liveness::Starting),
            b"online" => Some(Liveness::Online),
            b"offline" => Some(Liveness::Offline),
            _ => None,
        }
    }
}

impl std::fmt::Display for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(self.as_bytes()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_payloads() {
        for l in [Liveness::Starting, Liveness::Online, Liveness::Offline] {
            assert_eq!(Liveness::parse(l.as_bytes()), Some(l));
        }
        assert_eq!(Liveness::parse(b""), None);
        assert_eq!(Liveness::parse(b"ONLINE"), None);
    }
}
