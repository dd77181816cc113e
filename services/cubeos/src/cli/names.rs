//! `cubeos dns ls` and `cubeos proxy ls`: each name, what it should be and what the
//! backend has.

use cubeos_contract::api::proxy::{DnsList, ProxyList};

use super::{Cli, Client};
use crate::output;

/// Lists `dns.list` (`dns = true`) or `proxy.list`.
pub async fn list(cli: &Cli, dns: bool, as_json: bool) -> anyhow::Result<()> {
    let client = Client::connect(cli).await?;
    let result = if dns {
        client.call(&DnsList {}).await
    } else {
        client.call(&ProxyList {}).await
    };
    client.shutdown().await;
    let reply = result?;
    if as_json {
        return output::json(&reply);
    }
    let health = match (reply.healthy, &reply.error) {
        (_, Some(error)) => format!("error: {error}"),
        (true, None) => "healthy".into(),
        _ => "not synced yet".into(),
    };
    output::line(&format!("backend: {} ({health})", reply.backend));
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = reply
        .entries
        .into_iter()
        .map(|e| {
            vec![
                e.name,
                e.desired.unwrap_or_else(dash),
                e.actual.unwrap_or_else(dash),
                e.status,
            ]
        })
        .collect();
    output::table(&["NAME", "DESIRED", "ACTUAL", "STATUS"], &rows);
    Ok(())
}
