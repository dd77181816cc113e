//! `cubeos dns ls` and `cubeos proxy ls`: each name, what it should be and what the
//! backend has.

use cubeos_shared::topics::service::PROXY;
use serde_json::json;

use super::{Cli, Client};
use crate::output;

/// Lists `dns.list` (`dns = true`) or `proxy.list`.
pub async fn list(cli: &Cli, dns: bool, as_json: bool) -> anyhow::Result<()> {
    let client = Client::connect(cli).await?;
    let action = if dns { "dns.list" } else { "proxy.list" };
    let result = client.request(PROXY, action, &json!({})).await;
    client.shutdown().await;
    let reply = result?;
    if as_json {
        return output::json(&reply);
    }
    let entries: Vec<cubeos_proxy::Entry> = serde_json::from_value(reply["entries"].clone())?;
    let health = match (reply["healthy"].as_bool(), reply["error"].as_str()) {
        (_, Some(error)) => format!("error: {error}"),
        (Some(true), None) => "healthy".into(),
        _ => "not synced yet".into(),
    };
    output::line(&format!(
        "backend: {} ({health})",
        reply["backend"].as_str().unwrap_or("?")
    ));
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = entries
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
