//! The bus client: every service and the CLI talk to the broker through this.
//!
//! One rumqttc connection per [`Bus`]. A background task polls the event loop and
//! routes each incoming message: replies to the request waiting for them (matched by
//! correlation id), commands to the handler registered for their action, anything
//! else to local subscribers. After every (re)connect it resubscribes and republishes
//! the retained state this client owns — the broker keeps nothing across restarts,
//! so owners keep their state topics true.
//!
//! Commands run as their own tasks (bounded by `max_concurrent_commands`), so a slow
//! handler never stalls the event loop; a handler that panics is answered with
//! `internal` and the service goes on.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{Instrument, debug, info_span, warn};

use cubeos_contract::Command;
use cubeos_contract::envelope::{BusError, Caller, ErrorCode, ReplyEnvelope, RequestEnvelope, salvage_reply_address};
use cubeos_contract::liveness::Liveness;
use cubeos_contract::topics;

use crate::secrets::SecretBox;

/// How to reach the broker and who this client is.
#[derive(Debug, Clone)]
pub struct BusOptions {
    pub address: SocketAddr,
    pub username: String,
    pub password: String,
    /// MQTT client id; also names the reply topic `cubeos/reply/<client_id>`.
    pub client_id: String,
    /// Set for services: enables the liveness topic (with its last will) and
    /// [`Bus::serve`].
    pub service: Option<String>,
    pub request_timeout: Duration,
    /// Largest packet accepted from the broker.
    pub max_packet: usize,
    /// Largest command payload this client parses when serving.
    pub max_command_bytes: usize,
    pub max_concurrent_commands: usize,
    /// The data dir's key, on the box: calls then seal their secrets.
    pub secrets: Option<SecretBox>,
    /// Commands shorter than this are padded with trailing whitespace (still
    /// the same JSON). For a client that connects, sends one command and leaves:
    /// rumqttd keeps a logged message as a slice of the 10 KiB buffer it was read
    /// into and drops it from its log by the message's own size, so an unpadded
    /// 150-byte command would pin 70 times what the log's bound counts.
    pub pad_commands_to: usize,
}

impl BusOptions {
    /// Options for `client_id` from the configuration and the broker credentials.
    pub fn new(config: &crate::Config, client_id: impl Into<String>, username: &str, password: &str) -> Self {
        BusOptions {
            address: config.broker.address,
            username: username.to_owned(),
            password: password.to_owned(),
            client_id: client_id.into(),
            service: None,
            request_timeout: config.bus.request_timeout,
            max_packet: config.broker.max_payload + 1024,
            max_command_bytes: config.bus.max_command_bytes,
            max_concurrent_commands: config.bus.max_concurrent_commands,
            secrets: None,
            pad_commands_to: 0,
        }
    }

    /// The same options, sealing secrets with `key`.
    pub fn with_secrets(mut self, key: SecretBox) -> Self {
        self.secrets = Some(key);
        self
    }

    /// The same options for a service: the client id is the service's name.
    pub fn for_service(mut self, service: &str) -> Self {
        self.service = Some(service.to_owned());
        self
    }
}

/// A command as a handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub action: String,
    pub id: String,
    pub args: Value,
    /// Stamped by the gate for outside clients; loopback clients are `system`.
    pub caller: Caller,
}

impl Request {
    /// Deserialises the arguments; a mismatch is a `bad_request` that says which
    /// field and why.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, BusError> {
        let args = if self.args.is_null() {
            Value::Object(Default::default())
        } else {
            self.args.clone()
        };
        serde_json::from_value(args)
            .map_err(|e| BusError::bad_request(format!("invalid arguments for {}: {e}", self.action)))
    }
}

/// A message delivered to a local subscriber.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, BusError>> + Send>>;
type Handler = Arc<dyn Fn(Request) -> HandlerFuture + Send + Sync>;

/// A cloneable handle on one broker connection.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("client_id", &self.client_id()).finish()
    }
}

struct Inner {
    client: AsyncClient,
    options: BusOptions,
    reply_topic: String,
    next_id: AtomicU64,
    pending: Mutex<HashMap<String, oneshot::Sender<ReplyEnvelope>>>,
    handlers: RwLock<HashMap<String, Handler>>,
    serving: std::sync::atomic::AtomicBool,
    /// Retained state this client owns: republished after every reconnect.
    state: Mutex<BTreeMap<String, Vec<u8>>>,
    subscribers: Mutex<Vec<(String, QoS, mpsc::UnboundedSender<Message>)>>,
    permits: Arc<Semaphore>,
    connected: watch::Sender<bool>,
    /// The last CONNACK refusal, so that [`Bus::connect`] fails at once on a wrong
    /// password instead of retrying until its timeout.
    refused: watch::Sender<Option<rumqttc::ConnectReturnCode>>,
    /// Why the very first connection attempt failed (nothing listening, say), so
    /// that [`Bus::connect`] fails at once instead of retrying until its timeout.
    unreachable: watch::Sender<Option<String>>,
    event_loop: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// QoS of everything this client sends and subscribes to (the last will aside).
///
/// DESIGN.md asks for QoS 1; CubeOS uses 0, on purpose. Sessions are clean, so QoS 1
/// redelivers nothing across a reconnect that TCP had not already delivered:
/// requests have timeouts, and owners republish their state after reconnecting. It
/// would only add a PUBACK per message — and before the broker's listeners got
/// TCP_NODELAY, each of those held the next message behind a 40 ms delayed ACK.
const BUS_QOS: QoS = QoS::AtMostOnce;

impl Bus {
    /// Connects and waits for the first CONNACK (up to the request timeout). The
    /// connection is kept up in the background from then on.
    pub async fn connect(options: BusOptions) -> Result<Bus, BusError> {
        let mut mqtt = MqttOptions::new(
            options.client_id.clone(),
            options.address.ip().to_string(),
            options.address.port(),
        );
        // No username: an anonymous CONNECT (the gate accepts one before setup).
        if !options.username.is_empty() {
            mqtt.set_credentials(options.username.clone(), options.password.clone());
        }
        mqtt.set_keep_alive(Duration::from_secs(15))
            .set_clean_session(true)
            .set_max_packet_size(options.max_packet, options.max_packet)
            .set_request_channel_capacity(4096)
            .set_inflight(200);
        if let Some(service) = &options.service {
            mqtt.set_last_will(LastWill::new(
                topics::service_status(service),
                Liveness::Offline.as_bytes(),
                QoS::AtLeastOnce,
                true,
            ));
        }
        let (client, mut eventloop) = AsyncClient::new(mqtt, 4096);
        // Every command is a small write answered by a small write: without
        // TCP_NODELAY, Nagle and delayed ACKs add 40 ms to each round trip.
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (connected, mut ready) = watch::channel(false);
        let (refused, mut refusal) = watch::channel(None);
        let (unreachable, mut failure) = watch::channel(None);
        let inner = Arc::new(Inner {
            client,
            reply_topic: topics::reply(&options.client_id),
            permits: Arc::new(Semaphore::new(options.max_concurrent_commands)),
            options,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            handlers: RwLock::new(HashMap::new()),
            serving: Default::default(),
            state: Mutex::new(BTreeMap::new()),
            subscribers: Mutex::new(Vec::new()),
            connected,
            refused,
            unreachable,
            event_loop: Mutex::new(None),
        });
        let task = tokio::spawn(run_event_loop(Arc::downgrade(&inner), eventloop));
        *inner.event_loop.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        let timeout = inner.options.request_timeout;
        /// How the wait for the first CONNACK ended.
        enum First {
            Up,
            Refused(rumqttc::ConnectReturnCode),
            Unreachable(String),
        }
        let outcome = tokio::time::timeout(timeout, async {
            tokio::select! {
                up = ready.wait_for(|up| *up) => up.map(|_| First::Up).unwrap_or(First::Up),
                code = refusal.wait_for(Option::is_some) => match code.ok().and_then(|c| *c) {
                    Some(code) => First::Refused(code),
                    None => First::Up,
                },
                why = failure.wait_for(Option::is_some) => {
                    First::Unreachable(why.ok().and_then(|w| w.clone()).unwrap_or_default())
                }
            }
        })
        .await;
        let error = match outcome {
            Ok(First::Up) if *inner.connected.borrow() => return Ok(Bus { inner }),
            Ok(First::Refused(rumqttc::ConnectReturnCode::ServiceUnavailable)) => {
                BusError::unavailable("the broker cannot check sign-ins right now")
            }
            Ok(First::Refused(code)) => BusError::unauthorized(format!("the broker refused the sign-in ({code:?})")),
            Ok(First::Unreachable(why)) => {
                BusError::unavailable(format!("cannot reach the broker at {}: {why}", inner.options.address))
            }
            _ => BusError::unavailable(format!(
                "broker at {} did not accept the connection within {timeout:?}",
                inner.options.address
            )),
        };
        if let Some(task) = inner.event_loop.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        Err(error)
    }

    /// Follows the connection: `true` while connected. A client that must outlive a
    /// broker restart (an install waiting for its outcome) watches this.
    pub fn watch_connected(&self) -> watch::Receiver<bool> {
        self.inner.connected.subscribe()
    }

    pub fn client_id(&self) -> &str {
        &self.inner.options.client_id
    }

    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// Registers the handler for `action` on this service. Register every action
    /// before [`Bus::serve`].
    fn handle<F, Fut>(&self, action: &str, handler: F)
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, BusError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        self.inner
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(action.to_owned(), handler);
    }

    /// Binds the command type `C` on this service: its arguments are parsed as
    /// `C` (a mismatch is `bad_request`), then `f` runs with the service's state
    /// and the caller. The state is held weakly, so dropping it ends the service
    /// rather than leaking it through its own handlers.
    pub fn bind<C, S, E, F, Fut>(&self, state: &Arc<S>, f: F)
    where
        C: Command,
        S: Send + Sync + 'static,
        E: Into<BusError>,
        F: Fn(Arc<S>, Caller, C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C::Reply, E>> + Send + 'static,
    {
        debug_assert_eq!(self.inner.options.service.as_deref(), Some(C::SERVICE), "{}", C::ACTION);
        let weak = Arc::downgrade(state);
        let f = Arc::new(f);
        self.handle(C::ACTION, move |req: Request| {
            let (weak, f) = (weak.clone(), Arc::clone(&f));
            async move {
                let state = weak
                    .upgrade()
                    .ok_or_else(|| BusError::unavailable("the service is stopping"))?;
                let args: C = req.parse()?;
                let reply = f(state, req.caller, args).await.map_err(Into::into)?;
                serde_json::to_value(reply).map_err(|e| BusError::internal(format!("reply not encoded: {e}")))
            }
        });
    }

    /// Starts taking commands (`cubeos/cmd/<service>/+`) and marks the service online.
    pub async fn serve(&self) -> Result<(), BusError> {
        let Some(service) = self.inner.options.service.clone() else {
            return Err(BusError::internal("serve() needs a bus connected as a service"));
        };
        self.inner.serving.store(true, Ordering::SeqCst);
        self.inner
            .client
            .subscribe(topics::commands_of(&service), BUS_QOS)
            .await
            .map_err(client_down)?;
        self.inner
            .client
            .publish(
                topics::service_status(&service),
                BUS_QOS,
                true,
                Liveness::Online.as_bytes(),
            )
            .await
            .map_err(client_down)
    }

    /// Sends a command and waits for its typed reply (the configured request
    /// timeout).
    pub async fn call<C: Command>(&self, command: &C) -> Result<C::Reply, BusError> {
        self.call_with_timeout(command, self.inner.options.request_timeout)
            .await
    }

    /// [`Bus::call`] with its own timeout. A client holding the data dir's key
    /// sends every [`Secret`](cubeos_contract::secret::Secret) sealed and reads
    /// the sealed values of the reply opened.
    pub async fn call_with_timeout<C: Command>(&self, command: &C, timeout: Duration) -> Result<C::Reply, BusError> {
        let encode = || serde_json::to_value(command);
        let args = match &self.inner.options.secrets {
            Some(key) => key.sealing(encode),
            None => encode(),
        }
        .map_err(|e| BusError::bad_request(e.to_string()))?;
        let mut reply = self.request_as(C::SERVICE, C::ACTION, args, None, timeout).await?;
        if let Some(key) = &self.inner.options.secrets {
            key.open_fields(&mut reply);
        }
        serde_json::from_value(reply).map_err(|e| {
            BusError::internal(format!(
                "a reply of the wrong shape from {} to {}: {e}",
                C::SERVICE,
                C::ACTION
            ))
        })
    }

    /// Sends a command in its wire form and waits for the JSON reply: for tests and
    /// tools that speak the bus's JSON itself. Services and the CLI use
    /// [`Bus::call`], whose types come from the contract.
    pub async fn request<A: Serialize>(&self, service: &str, action: &str, args: &A) -> Result<Value, BusError> {
        self.request_with_timeout(service, action, args, self.inner.options.request_timeout)
            .await
    }

    /// [`Bus::request`] with its own timeout.
    pub async fn request_with_timeout<A: Serialize>(
        &self,
        service: &str,
        action: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<Value, BusError> {
        let args = serde_json::to_value(args).map_err(|e| BusError::bad_request(e.to_string()))?;
        self.request_as(service, action, args, None, timeout).await
    }

    /// A request on behalf of `caller` (the gate's, for its outside clients); the
    /// reply comes back to this connection only, matched by a correlation id of its
    /// own.
    pub async fn request_as(
        &self,
        service: &str,
        action: &str,
        args: Value,
        caller: Option<Caller>,
        timeout: Duration,
    ) -> Result<Value, BusError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let envelope = RequestEnvelope {
            id: id.clone(),
            reply_to: self.inner.reply_topic.clone(),
            args,
            caller,
        };
        let mut payload = serde_json::to_vec(&envelope).map_err(|e| BusError::internal(e.to_string()))?;
        if payload.len() < self.inner.options.pad_commands_to {
            payload.resize(self.inner.options.pad_commands_to, b' ');
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), tx);
        // Removes the waiter however this ends, also when the caller gives up and
        // drops this future (the gate does, for a client that left).
        let _waiting = Waiting {
            inner: &self.inner,
            id: &id,
        };
        let sent = self
            .inner
            .client
            .publish(topics::command(service, action), BUS_QOS, false, payload)
            .await;
        match sent {
            Err(e) => Err(client_down(e)),
            Ok(()) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(reply)) => reply.into_result(),
                Ok(Err(_)) => Err(BusError::unavailable("bus connection closed")),
                Err(_) => Err(BusError::new(
                    ErrorCode::Timeout,
                    format!("no reply from {service} to {action} within {timeout:?}"),
                )),
            },
        }
    }

    /// Publishes retained state that this client owns, and remembers it so that it
    /// is republished after a reconnect.
    pub async fn publish_state<T: Serialize>(&self, topic: &str, value: &T) -> Result<(), BusError> {
        let payload = serde_json::to_vec(value).map_err(|e| BusError::internal(e.to_string()))?;
        self.inner
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_owned(), payload.clone());
        self.inner
            .client
            .publish(topic, BUS_QOS, true, payload)
            .await
            .map_err(client_down)
    }

    /// Clears a retained state topic (an empty *retained* publish) and forgets it.
    pub async fn clear_state(&self, topic: &str) -> Result<(), BusError> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner()).remove(topic);
        self.inner
            .client
            .publish(topic, BUS_QOS, true, Vec::new())
            .await
            .map_err(client_down)
    }

    /// Publishes a (non-retained) event.
    pub async fn publish_event<T: Serialize>(&self, topic: &str, value: &T) -> Result<(), BusError> {
        let payload = serde_json::to_vec(value).map_err(|e| BusError::internal(e.to_string()))?;
        self.inner
            .client
            .publish(topic, BUS_QOS, false, payload)
            .await
            .map_err(client_down)
    }

    /// Publishes a message as another client sent it (the gate's relay of what
    /// outside clients publish), at QoS 0.
    pub async fn relay(&self, topic: &str, retain: bool, payload: Vec<u8>) -> Result<(), BusError> {
        self.inner
            .client
            .publish(topic, BUS_QOS, retain, payload)
            .await
            .map_err(client_down)
    }

    /// Delivers every message matching `filter` to the returned receiver, across
    /// reconnects. Subscribe to `cubeos/state/#` at QoS 0: rumqttd hands a fresh QoS 1
    /// wildcard subscriber at most 100 retained messages.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<mpsc::UnboundedReceiver<Message>, BusError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((filter.to_owned(), qos, tx));
        self.inner.client.subscribe(filter, qos).await.map_err(client_down)?;
        Ok(rx)
    }

    /// Closes the connection; for a service, the broker then publishes its last
    /// will (`offline`).
    ///
    /// The connection is dropped rather than ended with an MQTT DISCONNECT: rumqttd
    /// 0.20 turns DISCONNECT-then-close into two disconnect events, and when a new
    /// client takes the freed connection slot in between (a CLI run right after
    /// another), the second event disconnects the newcomer.
    pub async fn shutdown(&self) {
        let task = self.inner.event_loop.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.inner.connected.send_replace(false);
    }
}

/// A request waiting for its reply: its entry in the pending map goes when this
/// does.
struct Waiting<'a> {
    inner: &'a Inner,
    id: &'a str,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(self.id);
    }
}

fn client_down(e: rumqttc::ClientError) -> BusError {
    BusError::unavailable(format!("bus client stopped: {e}"))
}

/// Polls the connection for as long as a [`Bus`] handle exists, reconnecting with
/// backoff.
async fn run_event_loop(inner: std::sync::Weak<Inner>, mut eventloop: EventLoop) {
    let mut backoff = Duration::from_millis(50);
    let mut ever_connected = false;
    loop {
        let event = eventloop.poll().await;
        let Some(inner) = inner.upgrade() else { return };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(50);
                ever_connected = true;
                on_connect(&inner);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => route(&inner, p.topic, p.payload.to_vec(), p.retain),
            Ok(_) => {}
            Err(e) => {
                match &e {
                    rumqttc::ConnectionError::ConnectionRefused(code) => {
                        inner.refused.send_replace(Some(*code));
                    }
                    _ if !ever_connected => {
                        inner.unreachable.send_replace(Some(e.to_string()));
                    }
                    _ => {}
                }
                let was_up = inner.connected.send_replace(false);
                if was_up {
                    warn!(client = %inner.options.client_id, error = %e, "bus connection lost; reconnecting");
                } else {
                    debug!(client = %inner.options.client_id, error = %e, "bus connect failed");
                }
                drop(inner);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// After every CONNACK: resubscribe, announce liveness, republish owned state.
/// Queued with `try_*` because this runs on the event-loop task, which is what
/// drains the queue.
fn on_connect(inner: &Arc<Inner>) {
    let c = &inner.client;
    let mut filters = vec![(inner.reply_topic.clone(), BUS_QOS)];
    if let (true, Some(service)) = (inner.serving.load(Ordering::SeqCst), &inner.options.service) {
        filters.push((topics::commands_of(service), BUS_QOS));
    }
    for (filter, qos, _) in inner.subscribers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        filters.push((filter.clone(), *qos));
    }
    let filters = filters.into_iter().map(|(f, q)| rumqttc::SubscribeFilter::new(f, q));
    if let Err(e) = c.try_subscribe_many(filters) {
        warn!(error = %e, "could not queue subscriptions");
    }
    // A service is `starting` from its first connection until it serves, then
    // `online` again after every reconnect.
    if let Some(service) = &inner.options.service {
        let liveness = if inner.serving.load(Ordering::SeqCst) {
            Liveness::Online
        } else {
            Liveness::Starting
        };
        let _ = c.try_publish(topics::service_status(service), BUS_QOS, true, liveness.as_bytes());
    }
    let owned: Vec<(String, Vec<u8>)> = inner
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(t, p)| (t.clone(), p.clone()))
        .collect();
    if !owned.is_empty() {
        // Thousands of topics can exceed the queue: hand them over from a task.
        let client = c.clone();
        tokio::spawn(async move {
            for (topic, payload) in owned {
                if client.publish(topic, BUS_QOS, true, payload).await.is_err() {
                    return;
                }
            }
        });
    }
    inner.connected.send_replace(true);
}

fn route(inner: &Arc<Inner>, topic: String, payload: Vec<u8>, retain: bool) {
    if topic == inner.reply_topic {
        match serde_json::from_slice::<ReplyEnvelope>(&payload) {
            Ok(reply) => {
                let waiter = inner
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&reply.id);
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(reply);
                    }
                    None => debug!(id = %reply.id, "reply for no pending request (timed out?)"),
                }
            }
            Err(e) => warn!(error = %e, "unparseable reply dropped"),
        }
        return;
    }
    if let Some((service, action)) = topics::parse_command(&topic)
        && inner.options.service.as_deref() == Some(service)
        && inner.serving.load(Ordering::SeqCst)
    {
        dispatch(inner, action.to_owned(), payload);
        return;
    }
    let message = Message { topic, payload, retain };
    let mut subs = inner.subscribers.lock().unwrap_or_else(|p| p.into_inner());
    subs.retain(|(_, _, tx)| !tx.is_closed());
    for (filter, _, tx) in subs.iter() {
        if topics::matches(filter, &message.topic) {
            let _ = tx.send(message.clone());
        }
    }
}

/// Validates a command envelope and runs its handler on its own task.
fn dispatch(inner: &Arc<Inner>, action: String, payload: Vec<u8>) {
    let limit = inner.options.max_command_bytes;
    let parsed = if payload.len() > limit {
        Err(format!(
            "payload of {} bytes exceeds the {limit}-byte command limit",
            payload.len()
        ))
    } else {
        serde_json::from_slice::<RequestEnvelope>(&payload).map_err(|e| format!("malformed command envelope: {e}"))
    };
    let envelope = match parsed {
        Ok(env) if topics::is_reply_topic(&env.reply_to) => env,
        Ok(env) => {
            warn!(%action, reply_to = %cubeos_contract::validate::truncate(&env.reply_to, 80), "command without a usable reply_to dropped");
            return;
        }
        Err(problem) => {
            match salvage_reply_address(&payload) {
                Some((id, reply_to)) => {
                    debug!(%action, %problem, "malformed command answered");
                    let reply = ReplyEnvelope::from_result(id, Err(BusError::bad_request(problem)));
                    send_reply(inner, reply_to, reply);
                }
                None => {
                    warn!(%action, %problem, "malformed command without a usable reply_to dropped")
                }
            }
            return;
        }
    };
    let handler = inner
        .handlers
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&action)
        .cloned();
    let Some(handler) = handler else {
        let mut known: Vec<String> = inner
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        known.sort();
        let err = BusError::bad_request(format!(
            "unknown action '{}'",
            cubeos_contract::validate::truncate(&action, 64)
        ))
        .with_details(serde_json::json!({ "actions": known }));
        send_reply(
            inner,
            envelope.reply_to,
            ReplyEnvelope::from_result(envelope.id, Err(err)),
        );
        return;
    };
    // The policy holds here too, not only at the gate: a command stamped with a
    // caller is refused when that role may not call it.
    let caller = envelope.caller.unwrap_or_else(Caller::system);
    if let Err(err) = cubeos_contract::roles::check_call(caller.role, service_of(inner), &action) {
        send_reply(
            inner,
            envelope.reply_to,
            ReplyEnvelope::from_result(envelope.id, Err(err)),
        );
        return;
    }
    let inner = Arc::clone(inner);
    let permits = Arc::clone(&inner.permits);
    tokio::spawn(async move {
        let Ok(_permit) = permits.acquire_owned().await else {
            return;
        };
        let span = info_span!("command", %action, id = %envelope.id);
        let request = Request {
            action,
            id: envelope.id.clone(),
            args: envelope.args,
            caller,
        };
        // A panicking handler must not take the service down nor leave the caller
        // waiting: run it as its own task and answer `internal` if it dies.
        let result = match tokio::spawn(handler(request).instrument(span.clone())).await {
            Ok(result) => result,
            Err(e) => {
                span.in_scope(|| tracing::error!(error = %e, "command handler failed"));
                Err(BusError::internal("the command handler failed"))
            }
        };
        if let Err(e) = &result {
            span.in_scope(|| debug!(code = %e.code, message = %e.message, "command refused"));
        }
        send_reply(
            &inner,
            envelope.reply_to,
            ReplyEnvelope::from_result(envelope.id, result),
        );
    });
}

fn service_of(inner: &Inner) -> &str {
    inner.options.service.as_deref().unwrap_or_default()
}

fn send_reply(inner: &Arc<Inner>, reply_to: String, reply: ReplyEnvelope) {
    let payload = match serde_json::to_vec(&reply) {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "reply could not be encoded");
            return;
        }
    };
    let client = inner.client.clone();
    tokio::spawn(async move {
        if let Err(e) = client.publish(reply_to, BUS_QOS, false, payload).await {
            warn!(error = %e, "reply could not be sent");
        }
    });
}
