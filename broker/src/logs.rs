//! How much rumqttd may keep per subscription filter, by the kind of topic it
//! carries.
//!
//! rumqttd keeps an in-memory log for every distinct subscription filter: at most
//! `segment_count + 1` segments of about `segment_size` bytes (a segment closes
//! once it passes its size, so it can overshoot by one message). The log is also
//! how far a subscriber may fall behind: a reader more than a log behind skips to
//! its head and loses what it had not read (see [`crate::lag`]). Filters are
//! never freed, so what bounds the broker's memory is the number of filters times
//! these sizes; the gate and the CLI keep the number of filters fixed (see the
//! crate docs), and this table keeps each one small.
//!
//! The sizes come from measurement. What a log costs is not only its byte count:
//! rumqttd keeps each message as a slice of the 10 KiB read buffer of the
//! connection it came on, so a message from a client that connects, publishes
//! once and leaves pins that buffer until the log drops it (600 unpadded CLI calls
//! grew `cubeos up` by 8 MB that way). The CLI on the box therefore pads its
//! commands to 10 KiB (`BusOptions::pad_commands_to`), which makes the log's byte
//! bound true for it; outside clients' publishes are relayed on the gate's one
//! long-lived connection, where many messages share a buffer.
//!
//! Command and reply logs are sized for bursts: a 30,000-command burst from ten
//! clients at once lost 6,639 commands with 16 KiB command logs (the registry fell
//! behind on its filter), 51 with 512 KiB x 3 commands and 16 KiB x 2 replies (the
//! callers fell behind on theirs), none with the sizes below (the
//! `no_command_is_lost_in_a_burst_of_thirty_thousand` test).

use std::collections::HashMap;

use rumqttd::SegmentConfig;

/// One kind of filter: a pattern matched against the filter itself, and its log.
#[derive(Debug, Clone, Copy)]
pub struct LogSize {
    /// Filters this matches (no two patterns match the same filter: rumqttd
    /// applies every matching one in no set order).
    pub pattern: &'static str,
    pub segment_size: usize,
    pub segment_count: usize,
}

impl LogSize {
    /// The most one such filter holds when full (before the last message's overshoot).
    pub const fn bytes(&self) -> usize {
        self.segment_size * (self.segment_count + 1)
    }
}

const KIB: usize = 1024;

/// Every kind of filter CubeOS subscribes to by pattern, with its log. Reply
/// topics (services', the gate's) and anything else (a trusted client's own
/// filter) get `broker.segment_size` x `broker.segment_count`, all but the CLI's
/// reply slots, which get [`CLI_REPLY`]: patterns cannot overlap, so replies are
/// not a pattern here.
pub const LOGS: &[LogSize] = &[
    // One per service: where a burst of commands waits for its service.
    LogSize {
        pattern: "cubeos/cmd/#",
        segment_size: 512 * KIB,
        segment_count: 2,
    },
    // Retained state is kept apart from these logs; they only buffer live updates.
    LogSize {
        pattern: "cubeos/state/#",
        segment_size: 64 * KIB,
        segment_count: 1,
    },
    LogSize {
        pattern: "cubeos/events/#",
        segment_size: 64 * KIB,
        segment_count: 1,
    },
    LogSize {
        pattern: "cubeos/svc/#",
        segment_size: 16 * KIB,
        segment_count: 1,
    },
    // Buttons and sensors can be chatty.
    LogSize {
        pattern: "cubeos/hw/#",
        segment_size: 64 * KIB,
        segment_count: 1,
    },
    LogSize {
        pattern: "cubeos/nodes/#",
        segment_size: 64 * KIB,
        segment_count: 1,
    },
];

/// The log of one CLI reply slot's filter: a CLI call reads the one reply it
/// waits for, so a deep log would only hold old replies.
pub const CLI_REPLY: LogSize = LogSize {
    pattern: "cubeos/reply/cli-<n>",
    segment_size: 16 * KIB,
    segment_count: 1,
};

/// The table in rumqttd's form, with the reply filters of `cli_slots` CLI slots.
pub fn custom_segments(cli_slots: usize) -> HashMap<String, SegmentConfig> {
    let config = |log: &LogSize| SegmentConfig {
        max_segment_size: log.segment_size,
        max_segment_count: log.segment_count,
    };
    let slots = (0..cli_slots).map(|n| (cubeos_contract::topics::reply(&format!("cli-{n}")), config(&CLI_REPLY)));
    LOGS.iter()
        .map(|log| (log.pattern.to_owned(), config(log)))
        .chain(slots)
        .collect()
}

/// The log a filter gets.
pub fn for_filter(filter: &str) -> Option<&'static LogSize> {
    LOGS.iter().find(|log| rumqttd_matches(filter, log.pattern))
}

/// rumqttd's own rule for applying a pattern to a filter: the filter is read as a
/// topic, so a `#` in the pattern covers a wildcard in the filter.
fn rumqttd_matches(filter: &str, pattern: &str) -> bool {
    rumqttd::protocol::matches(filter, pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bus_filter_has_one_log() {
        for filter in [
            "cubeos/cmd/registry/+",
            "cubeos/state/#",
            "cubeos/state/apps/+/health",
            "cubeos/events/#",
            "cubeos/svc/+/status",
            "cubeos/hw/#",
            "cubeos/nodes/#",
        ] {
            let matching = LOGS.iter().filter(|l| rumqttd_matches(filter, l.pattern)).count();
            assert_eq!(matching, 1, "{filter}");
        }
        assert!(for_filter("#").is_none());
        assert!(for_filter("cubeos/#").is_none());
        assert!(for_filter("cubeos/reply/gate").is_none());
        let segments = custom_segments(2);
        assert_eq!(segments.len(), LOGS.len() + 2);
        assert_eq!(segments["cubeos/reply/cli-1"].max_segment_size, CLI_REPLY.segment_size);
    }
}
