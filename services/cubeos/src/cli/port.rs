//! `cubeos port ...`

use clap::Subcommand;
use cubeos_contract::api::port_allocator::{Allocate, Check, Holder, PortStats, Release, Stats, SwarmCheck};
use cubeos_contract::api::registry::{HeldPort, PortList};
use cubeos_contract::models::Protocol;
use serde::Serialize;

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

fn protocol(udp: bool) -> Protocol {
    if udp { Protocol::Udp } else { Protocol::Tcp }
}

fn swarm_note(swarm: &SwarmCheck) {
    if let SwarmCheck::Unavailable { reason } = swarm {
        output::line(&format!("note: Swarm was not checked ({reason})"));
    }
}

/// `port ls --json`: the ranges' use and every reservation.
#[derive(Serialize)]
struct Listing {
    ranges: PortStats,
    reservations: Vec<HeldPort>,
}

pub async fn run(cli: &Cli, cmd: PortCommand) -> anyhow::Result<()> {
    let client = Client::connect(cli).await?;
    let result = async {
        match cmd {
            PortCommand::Ls { json } => {
                let ranges = client.call(&Stats {}).await?;
                let reservations = client.call(&PortList::default()).await?;
                let listing = Listing { ranges, reservations };
                if json {
                    return output::json(&listing);
                }
                let stats = &listing.ranges;
                let mut rows = Vec::new();
                for (proto, ranges) in [(Protocol::Tcp, &stats.tcp), (Protocol::Udp, &stats.udp)] {
                    for r in ranges {
                        rows.push(vec![
                            r.app_type.clone(),
                            proto.to_string(),
                            format!("{}-{}", r.start, r.end),
                            r.in_use.to_string(),
                            r.free.to_string(),
                        ]);
                    }
                }
                output::table(&["RANGE", "PROTO", "PORTS", "IN USE", "FREE"], &rows);
                output::line("");
                let rows: Vec<Vec<String>> = listing
                    .reservations
                    .iter()
                    .map(|h| {
                        vec![
                            h.allocation.port.to_string(),
                            h.allocation.protocol.to_string(),
                            h.app.clone(),
                            h.allocation.description.clone(),
                        ]
                    })
                    .collect();
                output::table(&["PORT", "PROTO", "APP", "DESCRIPTION"], &rows);
                swarm_note(&stats.swarm);
                Ok(())
            }
            PortCommand::Check { port, udp, json } => {
                let reply = client
                    .call(&Check {
                        port,
                        protocol: Some(protocol(udp)),
                    })
                    .await?;
                if json {
                    return output::json(&reply);
                }
                let range = reply
                    .range
                    .as_ref()
                    .map(|r| format!(" ({r} range)"))
                    .unwrap_or_default();
                if reply.free {
                    output::line(&format!("{port}/{} is free{range}", protocol(udp)));
                } else {
                    output::line(&format!("{port}/{} is taken{range}:", protocol(udp)));
                    for h in &reply.held_by {
                        let who = match h {
                            Holder::App { app } => format!("app {app}"),
                            Holder::Socket {
                                pid: Some(pid),
                                process,
                            } => format!("socket of {} (pid {pid})", process.as_deref().unwrap_or("?")),
                            Holder::Socket { pid: None, .. } => {
                                "socket of a process not visible to this user".to_owned()
                            }
                            Holder::Swarm { service } => format!("Swarm service {service}"),
                        };
                        output::line(&format!("  {who}"));
                    }
                }
                if reply.reserved {
                    output::line("  reserved for host services: never given to user apps");
                }
                swarm_note(&reply.swarm);
                Ok(())
            }
            PortCommand::Allocate {
                app,
                preferred,
                udp,
                count,
            } => {
                let args = Allocate {
                    app,
                    preferred,
                    protocol: Some(protocol(udp)),
                    count: Some(count),
                    app_type: None,
                };
                let reply = client.call(&args).await?;
                for note in &reply.notes {
                    output::line(&format!("note: {note}"));
                }
                let ports: Vec<String> = reply.ports.iter().map(u16::to_string).collect();
                output::line(&format!("{}: {}/{}", reply.app, ports.join(","), reply.protocol));
                swarm_note(&reply.swarm);
                Ok(())
            }
            PortCommand::Release { app, port, udp } => {
                let args = Release {
                    app,
                    port,
                    protocol: port.map(|_| protocol(udp)),
                };
                let reply = client.call(&args).await?;
                let released: Vec<String> = reply
                    .released
                    .iter()
                    .map(|p| format!("{}/{}", p.port, p.protocol))
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
