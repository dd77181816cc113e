//! Accepting connections on a listener open to everyone (the gate's, the
//! dashboard's): a failed accept, out of file descriptors usually, waits instead of
//! spinning, and no more connections than a semaphore's permits are served at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// How long to wait after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The next connection with a permit to serve it (held until it ends); connections
/// beyond the permits are closed at once. `what` names the listener in log lines.
pub async fn accept_bounded(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    what: &str,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                warn!(error = %e, "{what} accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        match Arc::clone(slots).try_acquire_owned() {
            Ok(permit) => return (stream, peer, permit),
            Err(_) => warn!(%peer, "{what} connection refused: too many connections"),
        }
    }
}
