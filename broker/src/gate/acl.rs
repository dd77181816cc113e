//! The topic policy of outside clients: pure functions of who they are and the topic.
//!
//! - every signed-in person (readonly, user, admin) may read state, events and
//!   liveness, and call commands (which commands is [`cubeos_contract::roles`]);
//! - an admin may also publish hardware and node topics (to test a button, say);
//! - a device publishes and reads only under `cubeos/hw/<its id>/`, a node only
//!   under `cubeos/nodes/<its id>/`;
//! - anonymous (before setup) may only call `setup`;
//! - every client may subscribe to its own reply topic, and no one to another's.
//!
//! State, events, liveness and replies are written by the services alone: no outside
//! client may publish them, so nothing it sends can pose as the system's own word.

use std::net::IpAddr;

use cubeos_contract::roles::Role;
use cubeos_contract::topics;
use rumqttc::QoS;

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Identity {
    /// A user name, or a device / node id.
    pub user: String,
    pub role: Role,
    pub client_id: String,
    /// The session id, when the client signed in with a session token.
    pub session: Option<String>,
    pub address: IpAddr,
    /// Worked out once: they are compared with every packet's topic.
    reply_topic: String,
    /// A device's or node's own topic root.
    own_root: Option<String>,
}

impl Identity {
    pub fn new(user: String, role: Role, client_id: String, session: Option<String>, address: IpAddr) -> Identity {
        let own_root = match role {
            Role::Device => Some(topics::hardware_root(&user)),
            Role::Node => Some(topics::node_root(&user)),
            _ => None,
        };
        Identity {
            reply_topic: topics::reply(&client_id),
            own_root,
            user,
            role,
            client_id,
            session,
            address,
        }
    }

    pub fn reply_topic(&self) -> &str {
        &self.reply_topic
    }
}

/// What a PUBLISH from a client may do.
#[derive(Debug, PartialEq, Eq)]
pub enum PublishRule<'t> {
    /// A command: forwarded with the caller stamped, if the role may call it.
    Command {
        service: &'t str,
        action: &'t str,
    },
    /// Forwarded unchanged.
    Forward,
    Deny,
}

pub fn publish_rule<'t>(who: &Identity, topic: &'t str) -> PublishRule<'t> {
    let own_root = match &who.own_root {
        Some(root) => root,
        None => {
            if let Some((service, action)) = topics::parse_command(topic) {
                return PublishRule::Command { service, action };
            }
            let admin_may = who.role == Role::Admin
                && (topics::is_within(topic, topics::HARDWARE_ROOT) || topics::is_within(topic, topics::NODES_ROOT));
            return if admin_may && !has_wildcard(topic) {
                PublishRule::Forward
            } else {
                PublishRule::Deny
            };
        }
    };
    if topics::is_within(topic, own_root) && !has_wildcard(topic) {
        PublishRule::Forward
    } else {
        PublishRule::Deny
    }
}

/// The QoS a subscription is granted at, or `None` when it is refused.
///
/// State subscriptions are held to QoS 0: rumqttd delivers at most 100 retained
/// messages to a QoS 1 wildcard subscriber and drops the rest (DESIGN.md section 5).
pub fn subscribe_grant(who: &Identity, filter: &str, asked: QoS) -> Option<QoS> {
    if filter == who.reply_topic() {
        return Some(asked);
    }
    let allowed = match (who.role, &who.own_root) {
        (_, Some(root)) => topics::is_within(filter, root),
        (Role::Readonly | Role::User | Role::Admin, None) => topics::READABLE_ROOTS
            .iter()
            .any(|root| topics::is_within(filter, root)),
        _ => false,
    };
    if !allowed {
        return None;
    }
    Some(if topics::is_within(filter, topics::STATE_ROOT) {
        QoS::AtMostOnce
    } else {
        asked
    })
}

/// The one upstream filter that carries what `filter` (granted by
/// [`subscribe_grant`]) can match: a whole root (`cubeos/state/#`, `cubeos/hw/#`,
/// ..). The gate subscribes upstream to these alone and matches each client's own
/// filters itself, so rumqttd, which keeps a log per filter for ever, only ever
/// sees this fixed set of filters from outside clients, whatever they subscribe to.
pub fn upstream_filter(who: &Identity, filter: &str) -> Option<String> {
    let roots: &[&str] = match who.role {
        Role::Device => &[topics::HARDWARE_ROOT],
        Role::Node => &[topics::NODES_ROOT],
        _ => topics::READABLE_ROOTS,
    };
    roots
        .iter()
        .find(|root| topics::is_within(filter, root))
        .map(|root| format!("{root}/#"))
}

fn has_wildcard(topic: &str) -> bool {
    topic.contains(['+', '#'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role, user: &str) -> Identity {
        Identity::new(user.into(), role, "c1".into(), None, IpAddr::from([127, 0, 0, 1]))
    }

    #[test]
    fn persons_call_commands_and_read_state_only() {
        let ro = who(Role::Readonly, "ann");
        assert_eq!(
            publish_rule(&ro, "cubeos/cmd/registry/app.create"),
            PublishRule::Command {
                service: "registry",
                action: "app.create"
            }
        );
        assert_eq!(publish_rule(&ro, "cubeos/state/apps/x"), PublishRule::Deny);
        assert_eq!(publish_rule(&ro, "cubeos/reply/c2"), PublishRule::Deny);
        assert_eq!(publish_rule(&ro, "cubeos/hw/b1/press"), PublishRule::Deny);
        assert_eq!(
            publish_rule(&who(Role::Admin, "root"), "cubeos/hw/b1/press"),
            PublishRule::Forward
        );
        assert_eq!(
            publish_rule(&who(Role::Admin, "root"), "cubeos/state/x"),
            PublishRule::Deny
        );
        assert_eq!(
            subscribe_grant(&ro, "cubeos/state/#", QoS::AtLeastOnce),
            Some(QoS::AtMostOnce)
        );
        assert_eq!(
            subscribe_grant(&ro, "cubeos/events/#", QoS::AtLeastOnce),
            Some(QoS::AtLeastOnce)
        );
        assert_eq!(
            subscribe_grant(&ro, "cubeos/reply/c1", QoS::AtLeastOnce),
            Some(QoS::AtLeastOnce)
        );
        assert_eq!(subscribe_grant(&ro, "cubeos/reply/c2", QoS::AtMostOnce), None);
        assert_eq!(subscribe_grant(&ro, "cubeos/reply/+", QoS::AtMostOnce), None);
        assert_eq!(subscribe_grant(&ro, "cubeos/#", QoS::AtMostOnce), None);
        assert_eq!(subscribe_grant(&ro, "#", QoS::AtMostOnce), None);
        assert_eq!(subscribe_grant(&ro, "cubeos/cmd/#", QoS::AtMostOnce), None);
        assert_eq!(
            upstream_filter(&ro, "cubeos/state/apps/+/health").as_deref(),
            Some("cubeos/state/#")
        );
        assert_eq!(
            upstream_filter(&ro, "cubeos/events/x").as_deref(),
            Some("cubeos/events/#")
        );
        assert_eq!(upstream_filter(&ro, "cubeos/#"), None);
    }

    #[test]
    fn devices_and_nodes_stay_in_their_subtree() {
        let dev = who(Role::Device, "button-1");
        assert_eq!(publish_rule(&dev, "cubeos/hw/button-1/press"), PublishRule::Forward);
        assert_eq!(publish_rule(&dev, "cubeos/hw/button-2/press"), PublishRule::Deny);
        assert_eq!(publish_rule(&dev, "cubeos/hw/button-1/#"), PublishRule::Deny);
        assert_eq!(publish_rule(&dev, "cubeos/cmd/registry/app.list"), PublishRule::Deny);
        assert_eq!(subscribe_grant(&dev, "cubeos/state/#", QoS::AtMostOnce), None);
        assert_eq!(
            subscribe_grant(&dev, "cubeos/hw/button-1/led", QoS::AtMostOnce),
            Some(QoS::AtMostOnce)
        );
        let node = who(Role::Node, "n1");
        assert_eq!(publish_rule(&node, "cubeos/nodes/n1/heartbeat"), PublishRule::Forward);
        assert_eq!(publish_rule(&node, "cubeos/nodes/n2/heartbeat"), PublishRule::Deny);
        assert_eq!(
            subscribe_grant(&node, "cubeos/nodes/n1/#", QoS::AtMostOnce),
            Some(QoS::AtMostOnce)
        );
        assert_eq!(
            upstream_filter(&dev, "cubeos/hw/button-1/led").as_deref(),
            Some("cubeos/hw/#")
        );
        assert_eq!(
            upstream_filter(&node, "cubeos/nodes/n1/#").as_deref(),
            Some("cubeos/nodes/#")
        );
        let anon = who(Role::Anonymous, "");
        assert_eq!(subscribe_grant(&anon, "cubeos/state/#", QoS::AtMostOnce), None);
        assert_eq!(
            subscribe_grant(&anon, "cubeos/reply/c1", QoS::AtMostOnce),
            Some(QoS::AtMostOnce)
        );
    }
}
