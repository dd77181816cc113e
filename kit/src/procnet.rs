//! Ports bound on this host, read from the kernel's socket tables
//! (`/proc/net/{tcp,tcp6,udp,udp6}`): listening TCP sockets and bound UDP
//! sockets, IPv4 and IPv6. The owning process is found through `/proc/<pid>/fd`
//! when it is visible to us. Used by the broker (is a listener up?) and the port
//! allocator (is a port free? who holds it?).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use cubeos_contract::models::Protocol;

const TCP_LISTEN: &str = "0A";

/// Bound port -> socket inodes.
pub type Bound = HashMap<(u16, Protocol), Vec<u64>>;

/// Parses one `/proc/net/*` table. TCP sockets count when listening; UDP sockets
/// whenever they exist (UDP has no listen state).
pub fn parse_table(text: &str, protocol: Protocol, out: &mut Bound) {
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9)) else {
            continue;
        };
        if protocol == Protocol::Tcp && *state != TCP_LISTEN {
            continue;
        }
        let Some(port) = local
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        if port == 0 {
            continue;
        }
        out.entry((port, protocol))
            .or_default()
            .push(inode.parse().unwrap_or(0));
    }
}

/// Every bound port on the host, from `root` (`/proc`).
pub fn bound_ports(root: &Path) -> Bound {
    let mut out = Bound::new();
    for (file, protocol) in [
        ("tcp", Protocol::Tcp),
        ("tcp6", Protocol::Tcp),
        ("udp", Protocol::Udp),
        ("udp6", Protocol::Udp),
    ] {
        if let Ok(text) = std::fs::read_to_string(root.join("net").join(file)) {
            parse_table(&text, protocol, &mut out);
        }
    }
    out
}

/// Whether a socket could bind `port` on every address right now (IPv6 dual-stack,
/// or IPv4 where IPv6 is off). Cheap and exact for the instant it runs; the
/// tables above are the overview (reading them walks the kernel's whole socket
/// hash, milliseconds on a large machine).
pub fn bindable(port: u16, protocol: Protocol) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
    let v6 = (Ipv6Addr::UNSPECIFIED, port);
    let v4 = (Ipv4Addr::UNSPECIFIED, port);
    match protocol {
        Protocol::Tcp => TcpListener::bind(v6).is_ok() || (TcpListener::bind(v4).is_ok() && !ipv6_enabled()),
        Protocol::Udp => UdpSocket::bind(v6).is_ok() || (UdpSocket::bind(v4).is_ok() && !ipv6_enabled()),
    }
}

fn ipv6_enabled() -> bool {
    std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// A process holding a socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub pid: u32,
    pub process: String,
}

/// The file descriptors in `fd_dir` (a `/proc/<pid>/fd`) that are one of `inodes`.
pub fn socket_fds(fd_dir: &Path, inodes: &[u64]) -> Vec<i32> {
    let wanted: BTreeMap<String, ()> = inodes.iter().map(|i| (format!("socket:[{i}]"), ())).collect();
    let Ok(fds) = std::fs::read_dir(fd_dir) else {
        return Vec::new();
    };
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| l.to_str().map(|s| wanted.contains_key(s)))
                .unwrap_or(false)
        })
        .filter_map(|fd| fd.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

/// The processes that hold any of `inodes` (those we may look into).
pub fn holders(root: &Path, inodes: &[u64]) -> Vec<Holder> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir(root) else { return out };
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if !socket_fds(&entry.path().join("fd"), inodes).is_empty() {
            let process = std::fs::read_to_string(entry.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_owned();
            out.push(Holder { pid, process });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:075B 01 00000000:00000000 00:00000000 00000000     0        0 22222 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:17E6 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 33333 1 0000000000000000 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 44444 2 0000000000000000 0
";

    #[test]
    fn listening_tcp_and_bound_udp_count() {
        let mut b = Bound::new();
        parse_table(TCP, Protocol::Tcp, &mut b);
        parse_table(TCP6, Protocol::Tcp, &mut b);
        parse_table(UDP, Protocol::Udp, &mut b);
        assert_eq!(b.get(&(1883, Protocol::Tcp)), Some(&vec![12345]));
        assert!(
            !b.contains_key(&(40000, Protocol::Tcp)),
            "an established client socket is not a bound port"
        );
        assert_eq!(b.get(&(6118, Protocol::Tcp)), Some(&vec![33333]));
        assert_eq!(b.get(&(53, Protocol::Udp)), Some(&vec![44444]));
        parse_table("garbage\nmore garbage without fields\n", Protocol::Tcp, &mut b);
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn a_bound_port_is_not_bindable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!bindable(port, Protocol::Tcp));
        let udp = std::net::UdpSocket::bind("[::1]:0").unwrap();
        assert!(!bindable(udp.local_addr().unwrap().port(), Protocol::Udp));
        drop(listener);
        assert!(bindable(port, Protocol::Tcp));
    }

    #[test]
    fn finds_this_process_holding_a_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bound = bound_ports(Path::new("/proc"));
        let inodes = bound.get(&(port, Protocol::Tcp)).expect("our listener is seen").clone();
        let holders = holders(Path::new("/proc"), &inodes);
        assert!(holders.iter().any(|h| h.pid == std::process::id()), "{holders:?}");
    }
}
