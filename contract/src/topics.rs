//! The bus contract's topic table (DESIGN.md section 3). Every topic string in CubeOS
//! is built here and nowhere else.
//!
//! | kind | topic | retained |
//! |---|---|---|
//! | command | `cubeos/cmd/<service>/<action>` | no |
//! | reply | `cubeos/reply/<client-id>` | no |
//! | state | `cubeos/state/<domain>[/<key>]` | yes |
//! | event | `cubeos/events/<domain>/<event>` | no |
//! | liveness | `cubeos/svc/<service>/status` | yes |
//! | hardware | `cubeos/hw/<device>/<event>` | no |
//! | node | `cubeos/nodes/<node-id>/...` | both |

/// Root of every CubeOS topic.
pub const ROOT: &str = "cubeos";

const CMD: &str = "cubeos/cmd/";
const REPLY: &str = "cubeos/reply/";

/// `cubeos/cmd/<service>/<action>`: a command to one service.
pub fn command(service: &str, action: &str) -> String {
    format!("{CMD}{service}/{action}")
}

/// `cubeos/cmd/<service>/+`: every command addressed to `service`.
pub fn commands_of(service: &str) -> String {
    format!("{CMD}{service}/+")
}

/// Splits a command topic into `(service, action)`.
pub fn parse_command(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix(CMD)?;
    let (service, action) = rest.split_once('/')?;
    (!service.is_empty() && !action.is_empty() && !action.contains('/')).then_some((service, action))
}

/// `cubeos/reply/<client-id>`: where replies to one client go.
pub fn reply(client_id: &str) -> String {
    format!("{REPLY}{client_id}")
}

/// True when `topic` is a concrete reply topic a service may publish to: under
/// `cubeos/reply/`, one level, no wildcards, no NUL, bounded length.
pub fn is_reply_topic(topic: &str) -> bool {
    const MAX_TOPIC_LEN: usize = 256;
    match topic.strip_prefix(REPLY) {
        Some(id) => !id.is_empty() && topic.len() <= MAX_TOPIC_LEN && !id.contains(['/', '+', '#', '\0']),
        None => false,
    }
}

/// `cubeos/state/apps/<name>`: an app's configuration (owner: registry).
pub fn app_state(name: &str) -> String {
    format!("cubeos/state/apps/{name}")
}

/// The app named by an app state topic (`cubeos/state/apps/<name>`).
pub fn app_of_state(topic: &str) -> Option<&str> {
    topic
        .strip_prefix("cubeos/state/apps/")
        .filter(|name| !name.is_empty() && !name.contains('/'))
}

/// `cubeos/state/apps/<name>/status`: an app's runtime status (owner: orchestrator).
pub fn app_status(name: &str) -> String {
    format!("cubeos/state/apps/{name}/status")
}

/// `cubeos/state/system`: system_state as one object (owner: registry).
pub fn system_state() -> String {
    "cubeos/state/system".to_owned()
}

/// `cubeos/state/profiles/<name>`: a profile and the apps it enables (owner: registry).
pub fn profile_state(name: &str) -> String {
    format!("cubeos/state/profiles/{name}")
}

/// `cubeos/state/ports`: in use / free per port range (owner: port-allocator).
pub fn ports_state() -> String {
    "cubeos/state/ports".to_owned()
}

/// `cubeos/state/proxy`: DNS and reverse-proxy backends, health, last sync (owner: proxy).
pub fn proxy_state() -> String {
    "cubeos/state/proxy".to_owned()
}

/// `cubeos/state/apps/+`: every app's configuration, not its status.
pub fn all_app_states() -> String {
    "cubeos/state/apps/+".to_owned()
}

/// `cubeos/state/#`: the whole system's state, for dashboards and tests.
pub fn all_state() -> String {
    "cubeos/state/#".to_owned()
}

/// `cubeos/events/apps/<name>/<event>`, e.g. install progress.
pub fn app_event(name: &str, event: &str) -> String {
    format!("cubeos/events/apps/{name}/{event}")
}

/// `cubeos/events/apps/<name>/progress`: steps of a long operation on an app.
pub fn app_progress(name: &str) -> String {
    app_event(name, "progress")
}

/// `cubeos/svc/<service>/status`: `starting` / `online` / `offline` (last will),
/// retained ([`crate::liveness`]).
pub fn service_status(service: &str) -> String {
    format!("cubeos/svc/{service}/status")
}

/// `cubeos/svc/+/status`: every service's liveness.
pub fn all_service_statuses() -> String {
    service_status("+")
}

/// The service named by a liveness topic.
pub fn service_of_status(topic: &str) -> Option<&str> {
    topic
        .strip_prefix("cubeos/svc/")?
        .strip_suffix("/status")
        .filter(|s| !s.is_empty() && !s.contains('/'))
}

/// `cubeos/events/images/progress`: an image load's progress (owner: orchestrator).
pub fn image_progress() -> String {
    "cubeos/events/images/progress".to_owned()
}

/// `cubeos/hw/<device>/<event>`: a hardware button or sensor event.
pub fn hardware(device: &str, event: &str) -> String {
    format!("cubeos/hw/{device}/{event}")
}

/// `cubeos/nodes/<node-id>/<suffix>`: a multi-node agent's topic.
pub fn node(node_id: &str, suffix: &str) -> String {
    format!("cubeos/nodes/{node_id}/{suffix}")
}

/// Every state topic lies below this.
pub const STATE_ROOT: &str = "cubeos/state";
/// Every hardware topic lies below this.
pub const HARDWARE_ROOT: &str = "cubeos/hw";
/// Every node topic lies below this.
pub const NODES_ROOT: &str = "cubeos/nodes";

/// `cubeos/hw/<device>`: the subtree one hardware device may publish under.
pub fn hardware_root(device: &str) -> String {
    format!("{HARDWARE_ROOT}/{device}")
}

/// `cubeos/nodes/<node-id>`: the subtree one node agent may use.
pub fn node_root(node_id: &str) -> String {
    format!("{NODES_ROOT}/{node_id}")
}

/// `cubeos/events/auth/revoked`: sessions or users whose live connections must end
/// (owner: registry; the gate acts on it). Carries ids and names, never tokens.
pub fn auth_revoked() -> String {
    "cubeos/events/auth/revoked".to_owned()
}

/// `cubeos/state/broker`: subscribers that fell behind (owner: the broker).
pub fn broker_state() -> String {
    format!("{STATE_ROOT}/broker")
}

/// `cubeos/events/broker/lagging`: one subscriber fell behind on one filter and
/// lost messages; a state subscriber named in it resubscribes to catch up from
/// retained state.
pub fn broker_lagging() -> String {
    "cubeos/events/broker/lagging".to_owned()
}

/// Roots outside clients may read: state, events and liveness.
pub const READABLE_ROOTS: &[&str] = &[STATE_ROOT, "cubeos/events", "cubeos/svc"];

/// True when `topic_or_filter` lies strictly below `root` (a topic root without
/// wildcards): its leading levels equal `root`'s literally and at least one follows.
/// A filter that reaches `root` only through a wildcard (`cubeos/#`, `cubeos/+/x`)
/// is not within it.
pub fn is_within(topic_or_filter: &str, root: &str) -> bool {
    topic_or_filter
        .strip_prefix(root)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_a_root_only_literally() {
        assert!(is_within("cubeos/state/#", "cubeos/state"));
        assert!(is_within("cubeos/hw/b1/press", &hardware_root("b1")));
        assert!(!is_within("cubeos/hw/b10/press", &hardware_root("b1")));
        assert!(!is_within("cubeos/hw/b1", &hardware_root("b1")));
        assert!(!is_within("cubeos/#", "cubeos/state"));
        assert!(!is_within("cubeos/+/apps", "cubeos/state"));
        assert!(!is_within("#", "cubeos/state"));
    }

    #[test]
    fn command_topics_round_trip() {
        let t = command("registry", "app.create");
        assert_eq!(t, "cubeos/cmd/registry/app.create");
        assert_eq!(parse_command(&t), Some(("registry", "app.create")));
        assert_eq!(parse_command("cubeos/cmd/registry"), None);
        assert_eq!(parse_command("cubeos/cmd/registry/a/b"), None);
        assert_eq!(parse_command("cubeos/state/apps/x"), None);
    }

    #[test]
    fn liveness_topics_name_their_service() {
        assert_eq!(service_of_status(&service_status("registry")), Some("registry"));
        assert!(matches(&all_service_statuses(), &service_status("proxy")));
        assert_eq!(service_of_status("cubeos/svc//status"), None);
        assert_eq!(service_of_status("cubeos/svc/a/b/status"), None);
    }

    #[test]
    fn reply_topics_are_concrete() {
        assert!(is_reply_topic(&reply("cli-1")));
        assert!(!is_reply_topic("cubeos/reply/"));
        assert!(!is_reply_topic("cubeos/reply/#"));
        assert!(!is_reply_topic("cubeos/reply/a/b"));
        assert!(!is_reply_topic("cubeos/state/apps/x"));
        assert!(!is_reply_topic(&reply(&"x".repeat(300))));
    }
}

/// MQTT topic-filter matching (`+` one level, `#` the rest), for routing incoming
/// messages to local subscribers.
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod filter_tests {
    use super::matches;

    #[test]
    fn filters() {
        assert!(matches("cubeos/state/#", "cubeos/state/apps/x"));
        assert!(matches("cubeos/cmd/registry/+", "cubeos/cmd/registry/app.get"));
        assert!(!matches("cubeos/cmd/registry/+", "cubeos/cmd/registry/a/b"));
        assert!(!matches("cubeos/state/apps/x", "cubeos/state/apps/x/status"));
        assert!(matches("cubeos/state/apps/x", "cubeos/state/apps/x"));
    }
}

/// Service names: the `<service>` part of command and liveness topics.
pub mod service {
    pub const REGISTRY: &str = "registry";
    pub const PORT_ALLOCATOR: &str = "port-allocator";
    pub const ORCHESTRATOR: &str = "orchestrator";
    pub const PROXY: &str = "proxy";
    /// Services still to come; the action policy covers them already.
    pub const BACKUP_SCHEDULER: &str = "backup-scheduler";
    pub const NETWORK_MODE: &str = "network-mode";
}
