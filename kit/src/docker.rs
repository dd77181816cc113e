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

/// A Docker connection made on first use and kept. A failed connection is
/// remembered for `retry`: callers in that window get its error at once instead of
/// each waiting on a daemon that is not there.
pub struct DockerLink {
    config: DockerConfig,
    retry: std::time::Duration,
    state: tokio::sync::Mutex<LinkState>,
}

/// Where a [`DockerLink`] stands.
enum LinkState {
    Idle,
    Up(Docker),
    Down { since: std::time::Instant, error: BusError },
}

impl DockerLink {
    /// A link that connects on first use, retrying a failed daemon after `retry`.
    pub fn new(config: DockerConfig, retry: std::time::Duration) -> DockerLink {
        DockerLink {
            config,
            retry,
            state: tokio::sync::Mutex::new(LinkState::Idle),
        }
    }

    /// The client: the kept one, a new connection, or the last failure while it
    /// is recent.
    pub async fn get(&self) -> Result<Docker, BusError> {
        let mut state = self.state.lock().await;
        match &*state {
            LinkState::Up(docker) => return Ok(docker.clone()),
            LinkState::Down { since, error } if since.elapsed() < self.retry => return Err(error.clone()),
            _ => {}
        }
        match connect(&self.config).await {
            Ok(docker) => {
                *state = LinkState::Up(docker.clone());
                Ok(docker)
            }
            Err(error) => {
                *state = LinkState::Down {
                    since: std::time::Instant::now(),
                    error: error.clone(),
                };
                Err(error)
            }
        }
    }

    /// Drops the client after a call failed: the next [`DockerLink::get`]
    /// connects again at once.
    pub async fn forget(&self) {
        *self.state.lock().await = LinkState::Idle;
    }

    /// Marks Docker down with `error` (a call on the kept client failed): callers
    /// get it until the retry window has passed.
    pub async fn failed(&self, error: BusError) {
        *self.state.lock().await = LinkState::Down {
            since: std::time::Instant::now(),
            error,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_daemon_is_remembered_for_the_retry_window() {
        let dir = tempfile::tempdir().unwrap();
        let config = DockerConfig {
            socket: dir.path().join("docker.sock"),
            ..DockerConfig::default()
        };
        let link = DockerLink::new(config, std::time::Duration::from_secs(3600));
        let first = link.get().await.unwrap_err();
        assert_eq!(first.code, crate::ErrorCode::Unavailable);
        // A socket appearing now is not tried again within the window.
        std::os::unix::net::UnixListener::bind(dir.path().join("docker.sock")).unwrap();
        let again = link.get().await.unwrap_err();
        assert_eq!(again.message, first.message);
        link.failed(BusError::unavailable("listing failed")).await;
        assert_eq!(link.get().await.unwrap_err().message, "listing failed");
    }
}
