//! `cubeos port ...`

use clap::Subcommand;
use cubeos_shared::topics::service::{PORT_ALLOCATOR, REGISTRY};
use serde_json::{Value, json};

use super::{Cli, Client};
use crate::output;

#[derive(Subcommand)]
pub enum PortCommand {
    /// Ranges with their use, and every reservation.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Is a port free? Who holds it?
    Check {
        port: i64,
        #[arg(long)]
        udp: bool,
        #[arg(long)]
        json: bool,
    },
    /// Reserve a port for an app.
    Allocate {
        app: String,
        #[arg(long)]
        preferred: Vec<i64>,
        #[arg(long)]
        udp: bool,
        #[arg(long, default_value_t = 1)]
        count: i64,
    },
    /// Release one port of an app, or all of them.
    Release {
        app: String,
        port: Option<i64>,
        #[arg(long)]
        udp: bool,
    },
}

fn protocol(udp: bool) -> &'static str {
    if udp { "udp" } else { "tcp" }
}

fn swarm_note(reply: &Value) {
    if reply["swarm"]["status"] == "unavailable" {
        output::line(&format!(
            "note: Swarm was not checked ({})",
            reply["swarm"]["reason"].as_str().unwrap_or("")
        ));
    }
}

pub async fn run(cli: &Cli, cmd: PortCommand) -> anyhow::Result<()> {
    let client = Client::connect(cli).await?;
    let result = async {
        match cmd {
            PortCommand::Ls { json } => {
                let stats = client.request(PORT_ALLOCATOR, "stats", &json!({})).await?;
                let held = client.request(REGISTRY, "port.list", &json!({})).await?;
                if json {
                    return output::json(&json!({ "ranges": stats, "reservations": held }));
                }
                let mut rows = Vec::new();
                for proto in ["tcp", "udp"] {
                    for r in stats[proto].as_array().into_iter().flatten() {
                        rows.push(vec![
                            r["type"].as_str().unwrap_or("").to_owned(),
                            proto.to_owned(),
                            format!("{}-{}", r["start"], r["end"]),
                            r["in_use"].to_string(),
                            r["free"].to_string(),
                        ]);
                    }
                }
                output::table(&["RANGE", "PROTO", "PORTS", "IN USE", "FREE"], &rows);
                output::line("");
                let rows: Vec<Vec<String>> = held
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| {
                        vec![
                            h["port"].to_string(),
                            h["protocol"].as_str().unwrap_or("").to_owned(),
                            h["app"].as_str().unwrap_or("").to_owned(),
                            h["description"].as_str().unwrap_or("").to_owned(),
                        ]
                    })
                    .collect();
                output::table(&["PORT", "PROTO", "APP", "DESCRIPTION"], &rows);
                swarm_note(&stats);
                Ok(())
            }
            PortCommand::Check { port, udp, json } => {
                let reply = client
                    .request(
                        PORT_ALLOCATOR,
                        "check",
                        &json!({ "port": port, "protocol": protocol(udp) }),
                    )
                    .await?;
                if json {
                    return output::json(&reply);
                }
                let range = reply["range"]
                    .as_str()
                    .map(|r| format!(" ({r} range)"))
                    .unwrap_or_default();
                if reply["free"] == true {
                    output::line(&format!("{port}/{} is free{range}", protocol(udp)));
                } else {
                    output::line(&format!("{port}/{} is taken{range}:", protocol(udp)));
                    for h in reply["held_by"].as_array().into_iter().flatten() {
                        let who = match h["kind"].as_str() {
                            Some("app") => format!("app {}", h["app"].as_str().unwrap_or("")),
                            Some("socket") => match h["pid"].as_u64() {
                                Some(pid) => format!("socket of {} (pid {pid})", h["process"].as_str().unwrap_or("?")),
                                None => "socket of a process not visible to this user".to_owned(),
                            },
                            Some("swarm") => format!("Swarm service {}", h["service"].as_str().unwrap_or("")),
                            _ => h.to_string(),
                        };
                        output::line(&format!("  {who}"));
                    }
                }
                if reply["reserved"] == true {
                    output::line("  reserved for host services: never given to user apps");
                }
                swarm_note(&reply);
                Ok(())
            }
            PortCommand::Allocate {
                app,
                preferred,
                udp,
                count,
            } => {
                let args = json!({ "app": app, "preferred": preferred, "protocol": protocol(udp), "count": count });
                let reply = client.request(PORT_ALLOCATOR, "allocate", &args).await?;
                for note in reply["notes"].as_array().into_iter().flatten() {
                    output::line(&format!("note: {}", note.as_str().unwrap_or("")));
                }
                let ports: Vec<String> = reply["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| p.to_string())
                    .collect();
                output::line(&format!("{app}: {}/{}", ports.join(","), protocol(udp)));
                swarm_note(&reply);
                Ok(())
            }
            PortCommand::Release { app, port, udp } => {
                let mut args = json!({ "app": app, "port": port });
                if port.is_some() {
                    args["protocol"] = json!(protocol(udp));
                }
                let reply = client.request(PORT_ALLOCATOR, "release", &args).await?;
                let released: Vec<String> = reply["released"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("")))
                    .collect();
                output::line(&format!("released {}", released.join(", ")));
                Ok(())
            }
        }
    }
    .await;
    client.shutdown().await;
    result
}
