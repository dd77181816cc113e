//! The broker's own payloads. It answers no commands; it reports on itself.

use serde::{Deserialize, Serialize};

/// A subscriber the broker skipped ahead: it fell more than its filter's log
/// behind and lost messages it had not read (QoS 0 drops them without a word).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lagging {
    /// The broker connection's client id (an outside client's shows as the gate's
    /// upstream id for it).
    pub client_id: String,
    /// The subscription filter it fell behind on.
    pub filter: String,
    /// Times it fell behind on that filter since the broker started.
    pub times: u64,
}

/// `cubeos/state/broker`: how the broker is keeping up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BrokerState {
    /// Times any subscriber fell behind and lost messages, since start.
    pub lagged: u64,
    /// The subscribers that did, most recent last (at most 32 kept).
    pub lagging: Vec<Lagging>,
}
