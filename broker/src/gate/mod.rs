//! The gate: the only door outside clients have to the bus (DESIGN.md section 5).
//!
//! rumqttd listens on loopback for the services and trusts whoever holds the
//! service credentials. The gate listens on the outside addresses (MQTT over TCP and
//! over WebSocket), and for each client:
//!
//! 1. reads its CONNECT and signs it in through the registry (`auth.connect`: a
//!    password, a session token, or a device / node token; the password travels
//!    sealed), answering a failure with a real CONNACK code — 2 for a client id it
//!    cannot give a reply topic or that another principal holds, 4 for malformed
//!    credentials, 5 for wrong ones, 3 when the registry cannot be asked (or is
//!    busy hashing passwords);
//! 2. opens the client's own upstream connection to rumqttd with the service
//!    credentials (under a gate-assigned client id, so no client can take over a
//!    service's), for state, events and device / node topics;
//! 3. relays packets both ways, parsed with rumqttc's MQTT 3.1.1 codec, applying
//!    [`acl`] to every PUBLISH and SUBSCRIBE; commands it sends itself, on its own
//!    bus connection with the caller stamped, and hands each reply to the connection
//!    that sent the command and to no other ([`session`]).
//!
//! A client without credentials may only sign in (`auth.login`, `setup.status`) or,
//! on first boot, run `setup`: at most `gate.max_anonymous` such connections at
//! once, each for at most `gate.anonymous_timeout`, and none gets an upstream
//! connection, so signing in costs rumqttd nothing.
//!
//! Live sessions are tracked so that a revoked session (logout, password change,
//! user deleted) is disconnected at once. A second connection with the same client
//! id replaces the first, as MQTT requires, when it is the same principal (user,
//! role and session); another principal is refused with CONNACK 2, so no one can
//! push a client off its id.

pub mod acl;
mod session;
mod transport;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cubeos_contract::api::registry::{AuthConnect, Revoked};
use cubeos_contract::envelope::ErrorCode;
use cubeos_contract::roles::Role;
use cubeos_contract::secret::Secret;
use cubeos_contract::topics;
use cubeos_kit::secrets::SecretBox;
use cubeos_kit::{Bus, BusError, BusOptions, Config};
use rumqttc::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Login};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tracing::{debug, info, warn};

use crate::Credentials;
use acl::Identity;

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the gate cannot reach the broker: {0}")]
    Bus(#[from] BusError),
}

/// Where a running gate listens, and its door for WebSocket connections accepted
/// elsewhere.
#[derive(Clone)]
pub struct RunningGate {
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
    pub door: WebSocketDoor,
}

/// Hands WebSocket upgrades that another server accepted (the dashboard's `/mqtt`)
/// to the gate, to be served exactly as if they had reached its own listener: the
/// same connection limit, handshake timeout and sessions.
#[derive(Clone)]
pub struct WebSocketDoor {
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
}

impl WebSocketDoor {
    /// Serves one connection whose HTTP upgrade request has not been answered yet
    /// (`stream` replays it). It returns at once; the session runs on its own task.
    pub fn enter<S>(&self, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            warn!(%peer, "gate connection refused: too many connections");
            return;
        };
        tokio::spawn(serve_websocket(Arc::clone(&self.shared), stream, peer, slot));
    }
}

/// What every session needs.
pub(crate) struct Shared {
    /// The gate's own connection: sign-in checks, and every client's commands.
    bus: Bus,
    secrets: SecretBox,
    upstream: SocketAddr,
    service_login: Login,
    connect_timeout: Duration,
    command_timeout: Duration,
    anonymous_timeout: Duration,
    /// Connections without credentials open at once.
    anonymous: Arc<Semaphore>,
    max_packet: usize,
    /// Filters one connection may hold (`gate.max_subscriptions`).
    max_subscriptions: usize,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Live>>,
    upstream_ids: Mutex<IdPool>,
}

/// Upstream client ids: as many as were ever open at once. The one free longest
/// is reused first, so a fresh connection does not take the id of one rumqttd may
/// still be tearing down.
#[derive(Debug, Default)]
struct IdPool {
    free: std::collections::VecDeque<u32>,
    issued: u32,
}

impl IdPool {
    fn take(&mut self) -> u32 {
        self.free.pop_front().unwrap_or_else(|| {
            self.issued += 1;
            self.issued
        })
    }

    fn give(&mut self, n: u32) {
        self.free.push_back(n);
    }
}

/// A signed-in connection, for revocation and client-id takeover.
struct Live {
    client_id: String,
    principal: Principal,
    user: String,
    role: Role,
    session: Option<String>,
    kick: Arc<Notify>,
}

/// Starts the gate's listeners. It runs until the process ends.
pub async fn start(config: &Config, credentials: &Credentials, secrets: SecretBox) -> Result<RunningGate, GateError> {
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| GateError::Bind { addr, what, source })
    };
    let tcp = bind(config.gate.tcp_listen, "mqtt").await?;
    let ws = bind(config.gate.ws_listen, "websocket").await?;
    let (tcp_addr, ws_addr) = (
        tcp.local_addr().unwrap_or(config.gate.tcp_listen),
        ws.local_addr().unwrap_or(config.gate.ws_listen),
    );
    let options = BusOptions::new(config, "cubeos-gate", &credentials.username, &credentials.password);
    let bus = Bus::connect(options).await?;
    let revocations = bus.subscribe(&topics::auth_revoked(), QoS::AtMostOnce).await?;
    let shared = Arc::new(Shared {
        bus,
        secrets,
        upstream: config.broker.address,
        service_login: Login::new(credentials.username.clone(), credentials.password.clone()),
        connect_timeout: config.gate.connect_timeout,
        command_timeout: config.gate.command_timeout,
        anonymous_timeout: config.gate.anonymous_timeout,
        anonymous: Arc::new(Semaphore::new(config.gate.max_anonymous)),
        max_packet: config.broker.max_payload + 1024,
        max_subscriptions: config.gate.max_subscriptions,
        next_id: AtomicU64::new(1),
        live: Mutex::new(HashMap::new()),
        upstream_ids: Mutex::new(IdPool::default()),
    });
    let slots = Arc::new(Semaphore::new(config.broker.max_connections));
    tokio::spawn(accept(tcp, Arc::clone(&shared), Arc::clone(&slots), false));
    tokio::spawn(accept(ws, Arc::clone(&shared), Arc::clone(&slots), true));
    tokio::spawn(watch_revocations(Arc::downgrade(&shared), revocations));
    info!(tcp = %tcp_addr, ws = %ws_addr, "gate listening");
    Ok(RunningGate {
        tcp: tcp_addr,
        ws: ws_addr,
        door: WebSocketDoor { shared, slots },
    })
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, slots: Arc<Semaphore>, websocket: bool) {
    loop {
        let (stream, peer, slot) = cubeos_kit::listen::accept_bounded(&listener, &slots, "gate").await;
        let shared = Arc::clone(&shared);
        if websocket {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve_websocket(shared, stream, peer, slot));
        } else {
            tokio::spawn(async move {
                session::serve(shared, transport::tcp(stream), peer.ip()).await;
                drop(slot);
            });
        }
    }
}

/// Completes a WebSocket upgrade within the connect timeout, then serves the session.
async fn serve_websocket<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr, slot: tokio::sync::OwnedSemaphorePermit)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = transport::websocket(stream, shared.max_packet);
    let Ok(Some(io)) = tokio::time::timeout(shared.connect_timeout, handshake).await else {
        debug!(%peer, "WebSocket handshake failed");
        return;
    };
    session::serve(shared, io, peer.ip()).await;
    drop(slot);
}

async fn watch_revocations(
    shared: std::sync::Weak<Shared>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<cubeos_kit::bus::Message>,
) {
    while let Some(message) = events.recv().await {
        let Some(shared) = shared.upgrade() else { return };
        let Ok(revoked) = serde_json::from_slice::<Revoked>(&message.payload) else {
            continue;
        };
        let live = shared.live.lock().unwrap_or_else(|p| p.into_inner());
        for conn in live.values() {
            let by_session = conn.session.as_ref().is_some_and(|s| revoked.sessions.contains(s));
            let by_user = conn.role.is_person() && revoked.users.contains(&conn.user);
            if by_session || by_user {
                info!(client = %conn.client_id, user = %conn.user, "session revoked: disconnecting");
                conn.kick.notify_one();
            }
        }
    }
}

impl Shared {
    /// Signs a CONNECT in, or says which CONNACK code refuses it.
    async fn authenticate(&self, connect: &Connect, address: IpAddr) -> Result<Identity, ConnectReturnCode> {
        // An empty id asks the server for one (MQTT 3.1.1, 3.1.3.1); the client never
        // learns it, so such a client can read state but not call commands. `~` is
        // outside the ids clients may choose, so no one can take this one over.
        let client_id = match connect.client_id.as_str() {
            "" if connect.clean_session => format!("~anon-{}", self.next_id.fetch_add(1, Ordering::Relaxed)),
            id if valid_client_id(id) => id.to_owned(),
            _ => return Err(ConnectReturnCode::BadClientId),
        };
        let (username, password) = match &connect.login {
            None => (None, None),
            Some(login) if login.username.is_empty() || login.password.is_empty() => {
                return Err(ConnectReturnCode::BadUserNamePassword);
            }
            Some(login) => {
                let sealed = self
                    .secrets
                    .seal(&login.password)
                    .map_err(|_| ConnectReturnCode::ServiceUnavailable)?;
                (Some(login.username.clone()), Some(Secret::new(sealed)))
            }
        };
        let ask = AuthConnect {
            username,
            password,
            address: Some(address.to_string()),
        };
        let granted = match self.bus.call(&ask).await {
            Ok(granted) => granted,
            Err(e) => {
                return Err(match e.code {
                    ErrorCode::Unauthorized | ErrorCode::Forbidden => ConnectReturnCode::NotAuthorized,
                    ErrorCode::BadRequest => ConnectReturnCode::BadUserNamePassword,
                    // Too many password checks at once: expected under a flood.
                    ErrorCode::Unavailable => {
                        debug!(message = %e.message, "sign-in refused for now");
                        ConnectReturnCode::ServiceUnavailable
                    }
                    _ => {
                        warn!(code = %e.code, "sign-in could not be checked");
                        ConnectReturnCode::ServiceUnavailable
                    }
                });
            }
        };
        Ok(Identity::new(
            granted.user,
            granted.role,
            client_id,
            granted.session,
            address,
        ))
    }

    /// Opens a client's upstream connection under a pooled id (`gate-<n>`):
    /// rumqttd keeps a record per client id it ever saw, so ids are reused rather
    /// than new for every client. The id must be handed back ([`Shared::release`]).
    async fn open_upstream(&self, client: &Connect) -> (u32, std::io::Result<session::Upstream>) {
        let n = self.upstream_ids.lock().unwrap_or_else(|p| p.into_inner()).take();
        let upstream = session::connect_upstream(self.upstream, &self.service_login, client, format!("gate-{n}")).await;
        (n, upstream)
    }

    /// Hands an upstream id back to the pool.
    fn release(&self, n: u32) {
        self.upstream_ids.lock().unwrap_or_else(|p| p.into_inner()).give(n);
    }

    /// Records a live session. An older one with the same client id is ended when
    /// it is the same principal (MQTT's takeover); when it is another, the new one
    /// is refused (`None`), so no client can push another off its id.
    fn register(&self, who: &Identity) -> Option<(u64, Arc<Notify>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let principal = Principal::of(who, id);
        let kick = Arc::new(Notify::new());
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let holders: Vec<&Live> = live.values().filter(|c| c.client_id == who.client_id).collect();
        if holders.iter().any(|c| c.principal != principal) {
            return None;
        }
        for conn in holders {
            conn.kick.notify_one();
        }
        live.insert(
            id,
            Live {
                client_id: who.client_id.clone(),
                principal,
                user: who.user.clone(),
                role: who.role,
                session: who.session.clone(),
                kick: Arc::clone(&kick),
            },
        );
        Some((id, kick))
    }

    fn unregister(&self, id: u64) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

/// Who a connection acts for: the same principal may take over its own client id,
/// another may not.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Principal {
    /// Every connection without credentials is a principal of its own: one
    /// stranger's first-boot `setup` is no other stranger's business.
    Anonymous(u64),
    SignedIn {
        role: Role,
        user: String,
        session: Option<String>,
    },
}

impl Principal {
    fn of(who: &Identity, connection: u64) -> Principal {
        match who.role {
            Role::Anonymous => Principal::Anonymous(connection),
            role => Principal::SignedIn {
                role,
                user: who.user.clone(),
                session: who.session.clone(),
            },
        }
    }
}

/// A client id the gate can give a reply topic: 1-128 of `[A-Za-z0-9_.:-]`.
fn valid_client_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}
