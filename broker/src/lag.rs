//! Slow subscribers made visible.
//!
//! rumqttd skips a subscriber that fell more than its filter's log behind to the
//! log's head and, for QoS 0, says nothing to it: the messages in between are
//! lost. It does record a "cursor jump" alert; this module takes those alerts and
//! turns each into a log line (at most one a minute per client and filter), a
//! count in the retained `cubeos/state/broker`, and a `cubeos/events/broker/lagging`
//! event naming the client, so that a state subscriber can resubscribe and catch up
//! from retained state (the kit's bus client does not do so by itself yet).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cubeos_contract::api::broker::{BrokerState, Lagging};
use cubeos_contract::topics;
use cubeos_kit::Bus;
use rumqttd::alerts::AlertsLink;
use tracing::info;

/// Subscribers listed in the state topic; older ones are dropped from the list.
const LISTED: usize = 32;

/// At most one log line per client and filter in this long.
const QUIET_FOR: Duration = Duration::from_secs(60);

/// rumqttd's alert stream, taken before the broker starts.
pub struct LagAlerts(pub(crate) AlertsLink);

impl std::fmt::Debug for LagAlerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LagAlerts")
    }
}

/// What the watcher has seen since the broker started.
#[derive(Debug, Default)]
pub struct Tally {
    state: BrokerState,
    logged: HashMap<(String, String), Instant>,
}

impl Tally {
    /// Counts one cursor jump; says whether it deserves a log line now.
    pub fn record(&mut self, client_id: &str, filter: &str, now: Instant) -> (Lagging, bool) {
        self.state.lagged += 1;
        let list = &mut self.state.lagging;
        let times = match list.iter().position(|l| l.client_id == client_id && l.filter == filter) {
            Some(i) => list.remove(i).times + 1,
            None => 1,
        };
        let entry = Lagging {
            client_id: client_id.to_owned(),
            filter: filter.to_owned(),
            times,
        };
        list.push(entry.clone());
        if list.len() > LISTED {
            list.remove(0);
        }
        let key = (client_id.to_owned(), filter.to_owned());
        let log = self
            .logged
            .get(&key)
            .is_none_or(|at| now.duration_since(*at) >= QUIET_FOR);
        if log {
            self.logged.retain(|_, at| now.duration_since(*at) < QUIET_FOR);
            self.logged.insert(key, now);
        }
        (entry, log)
    }

    pub fn state(&self) -> &BrokerState {
        &self.state
    }
}

/// Reads a cursor-jump alert (rumqttd does not export its alert kinds by name).
fn cursor_jump(alert: &rumqttd::Alert) -> Option<(String, String)> {
    let value = serde_json::to_value(alert).ok()?;
    let filter = value
        .get("kind")?
        .get("CursorJump")?
        .get("filter")?
        .as_str()?
        .to_owned();
    Some((alert.client_id.clone(), filter))
}

/// Publishes lag reports on `bus` until the broker's alert stream ends.
pub async fn watch(alerts: LagAlerts, bus: Bus) {
    let mut tally = Tally::default();
    let _ = bus.publish_state(&topics::broker_state(), tally.state()).await;
    while let Ok(batch) = alerts.0.next().await {
        let jumps: Vec<_> = batch.iter().filter_map(cursor_jump).collect();
        for (client_id, filter) in &jumps {
            let (lagging, log) = tally.record(client_id, filter, Instant::now());
            if log {
                // INFO, not WARN: rumqttd also reports a reader it merely moved
                // past an empty segment, and it does not say how much was lost.
                info!(
                    client = %client_id, %filter, times = lagging.times,
                    "subscriber skipped ahead in the broker's log: it may have lost messages"
                );
            }
            let _ = bus.publish_event(&topics::broker_lagging(), &lagging).await;
        }
        if !jumps.is_empty() {
            let _ = bus.publish_state(&topics::broker_state(), tally.state()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_jump_and_logs_once_a_minute() {
        let mut tally = Tally::default();
        let t0 = Instant::now();
        assert!(tally.record("a", "cubeos/state/#", t0).1);
        let (entry, log) = tally.record("a", "cubeos/state/#", t0 + Duration::from_secs(1));
        assert_eq!(entry.times, 2);
        assert!(!log);
        assert!(tally.record("b", "cubeos/state/#", t0).1);
        assert!(tally.record("a", "cubeos/state/#", t0 + QUIET_FOR).1);
        assert_eq!(tally.state().lagged, 4);
        assert_eq!(tally.state().lagging.len(), 2);
        for i in 0..100 {
            tally.record(&format!("c{i}"), "f", t0);
        }
        assert_eq!(tally.state().lagging.len(), LISTED);
    }
}
