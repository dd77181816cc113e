//! Ports published by Swarm services (any service on the node, not only ours).

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{EndpointPortConfig, EndpointPortConfigProtocolEnum};
use cubeos_contract::models::Protocol;

/// Published port -> the Swarm service publishing it.
pub type Published = HashMap<(u16, Protocol), String>;

/// Reads every service's published ports (spec and live endpoint).
pub async fn published_ports(docker: &Docker) -> Result<Published, bollard::errors::Error> {
    let mut out = Published::new();
    for service in docker.list_services(None).await? {
        let name = service
            .spec
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_else(|| service.id.clone().unwrap_or_default());
        let from_spec = service
            .spec
            .as_ref()
            .and_then(|s| s.endpoint_spec.as_ref())
            .and_then(|e| e.ports.as_ref());
        let from_endpoint = service.endpoint.as_ref().and_then(|e| e.ports.as_ref());
        for port in from_spec.into_iter().chain(from_endpoint).flatten() {
            if let Some(key) = key(port) {
                out.insert(key, name.clone());
            }
        }
    }
    Ok(out)
}

fn key(port: &EndpointPortConfig) -> Option<(u16, Protocol)> {
    let published = u16::try_from(port.published_port?).ok().filter(|p| *p > 0)?;
    let protocol = match port.protocol {
        Some(EndpointPortConfigProtocolEnum::UDP) => Protocol::Udp,
        Some(EndpointPortConfigProtocolEnum::TCP) | Some(EndpointPortConfigProtocolEnum::EMPTY) | None => Protocol::Tcp,
        Some(EndpointPortConfigProtocolEnum::SCTP) => return None,
    };
    Some((published, protocol))
}
