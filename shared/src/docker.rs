//! The one way CubeOS reaches the Docker Engine: bollard over the configured unix
//! socket, API version negotiated with the daemon.

use bollard::Docker;

use crate::BusError;
use crate::config::DockerConfig;

/// Connects and negotiates the API version; a daemon that is not there (no socket,
/// not answering) is `unavailable`.
pub async fn connect(config: &DockerConfig) -> Result<Docker, BusError> {
    let unavailable = |e: bollard::errors::Error| {
        BusError::unavailable(format!("Docker at {} is unreachable: {e}", config.socket.display()))
    };
    let socket = config
        .socket
        .to_str()
        .ok_or_else(|| BusError::unavailable("Docker socket path is not UTF-8"))?;
    let docker = Docker::connect_with_unix(socket, config.timeout.as_secs().max(1), bollard::API_DEFAULT_VERSION)
        .map_err(unavailable)?;
    let docker = docker.negotiate_version().await.map_err(unavailable)?;
    docker.ping().await.map_err(unavailable)?;
    Ok(docker)
}
