//! Client commands: connect with the data dir's credentials, send one command,
//! print the reply.

pub mod app;
pub mod install;
pub mod port;
pub mod preview;
pub mod state;

use cubeos_broker::Credentials;
use cubeos_shared::{Bus, BusOptions, Config};

/// Connects as a one-off client (`cli-<random>`).
pub async fn connect(config: &Config) -> anyhow::Result<Bus> {
    let credentials = Credentials::load(&config.credentials_path())
        .map_err(|e| anyhow::anyhow!("{e}; is `cubeos up` running with this data dir?"))?;
    let client_id = format!("cli-{:016x}", rand_id());
    let options = BusOptions::new(config, client_id, &credentials.username, &credentials.password);
    Bus::connect(options)
        .await
        .map_err(|e| anyhow::anyhow!("{e}; is `cubeos up` running?"))
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}
