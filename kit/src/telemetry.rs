//! Tracing setup shared by the binary and the tests.
//!
//! rumqttd logs at levels that mean little to a person running a box: every
//! ordinary disconnect is an ERROR ("no-connection id N is already gone",
//! "disconnected"), while a subscriber losing messages is a WARN with no client
//! named. Its events are therefore not printed as they are: [`Relevel`] maps each
//! onto a level that says what it means for the box ([`rumqttd_level`]) and prints
//! it under the target `broker`.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

/// Third-party crates that are chatty at `info` (rumqttd logs every connection and
/// segment override); they stay at `warn` unless the directive names them.
const QUIET: &[&str] = &["rumqttd=warn", "rumqttc=warn", "sqlx=warn"];

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(config: &LogConfig) {
    let mut filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    for directive in QUIET {
        let target = directive.split('=').next().unwrap_or_default();
        if !config.level.contains(target)
            && let Ok(d) = directive.parse()
        {
            filter = filter.add_directive(d);
        }
    }
    use std::io::IsTerminal;
    let not_rumqttd = filter_fn(|meta| !is_rumqttd(meta.target()));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(Relevel);
    let _ = match config.format {
        LogFormat::Text => registry.with(fmt.with_filter(not_rumqttd)).try_init(),
        LogFormat::Json => registry.with(fmt.json().with_filter(not_rumqttd)).try_init(),
    };
}

fn is_rumqttd(target: &str) -> bool {
    target == "rumqttd" || target.starts_with("rumqttd::")
}

/// The level a rumqttd message deserves, from what it says.
pub fn rumqttd_level(level: Level, message: &str) -> Level {
    const ORDINARY: &[&str] = &[
        // A client left; rumqttd notices it twice.
        "is already gone",
        // Also "Connection is already disconnected".
        "disconnected",
        "connection-stop",
        "router-drop",
        // Reported with the client's name by the broker's lag watcher. Also
        // "jumping to head".
        "Read cursor start jumped",
        "jumping",
    ];
    const CLIENT_FAULT: &[&str] = &[
        // One client sent something bad: its connection ends, nothing else.
        "Error while handling MQTT connect packet",
        "Websocket failed handshake",
        "Failed to append to commitlog",
        "Invalid client_id",
        "Subscription cannot be validated",
        "Unsolicited/ooo ack",
        "Unexpected packet received",
        "Failed to send alert",
    ];
    if ORDINARY.iter().any(|m| message.contains(m)) {
        Level::DEBUG
    } else if CLIENT_FAULT.iter().any(|m| message.contains(m)) {
        Level::INFO
    } else if level == Level::INFO {
        Level::DEBUG
    } else {
        level
    }
}

/// Re-emits rumqttd's events at [`rumqttd_level`], under the target `broker`.
struct Relevel;

impl<S: Subscriber> Layer<S> for Relevel {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if !is_rumqttd(meta.target()) {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        let message = text.0;
        match rumqttd_level(*meta.level(), &message) {
            Level::ERROR => tracing::error!(target: "broker", "{message}"),
            Level::WARN => tracing::warn!(target: "broker", "{message}"),
            Level::INFO => tracing::info!(target: "broker", "{message}"),
            Level::DEBUG => tracing::debug!(target: "broker", "{message}"),
            _ => tracing::trace!(target: "broker", "{message}"),
        }
    }
}

/// An event's message and fields as one line.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = match field.name() {
            "message" => write!(self.0, "{value:?}"),
            name => write!(self.0, "{name}={value:?}"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_disconnects_are_not_errors() {
        assert_eq!(
            rumqttd_level(Level::ERROR, "no-connection id 7 is already gone"),
            Level::DEBUG
        );
        assert_eq!(rumqttd_level(Level::ERROR, "disconnected error=Io(..)"), Level::DEBUG);
        assert_eq!(rumqttd_level(Level::INFO, "Client connection registered"), Level::DEBUG);
        assert_eq!(
            rumqttd_level(Level::ERROR, "Error while handling MQTT connect packet"),
            Level::INFO
        );
        assert_eq!(rumqttd_level(Level::ERROR, "no space for new connection"), Level::ERROR);
        assert_eq!(rumqttd_level(Level::WARN, "something new"), Level::WARN);
    }
}
