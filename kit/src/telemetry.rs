//! Tracing setup shared by the binary and the tests.

use tracing_subscriber::EnvFilter;

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
