//! One outside client's session: CONNECT and sign-in, then every packet in both
//! directions.
//!
//! Client to broker, each packet is checked against [`acl`](super::acl): a command
//! is sent by the gate itself, on its own bus connection, with the caller stamped and
//! its secret fields sealed, and its reply is handed to this session alone; denied
//! publishes are dropped and logged; denied subscriptions get SUBACK 0x80. Other
//! allowed publishes (hardware, node topics) are relayed on the gate's bus
//! connection too. Allowed subscriptions are kept by the session (at most
//! `gate.max_subscriptions`) and matched by it against what arrives on the client's
//! own upstream connection to rumqttd, which holds only whole roots
//! (`cubeos/state/#`, ..) and the client's last will; a client without credentials
//! gets none.
//!
//! Replies are bound to the connection that sent the command, never to a client id:
//! rumqttd delivers a reply only to the gate's own reply topic, and the gate matches
//! it to the waiting session by a correlation id of its own. A client that signs in
//! later with the same client id (another principal is refused outright; see
//! `Shared::register`) cannot receive a reply to a command it did not send, nor a
//! token in one.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cubeos_contract::envelope::{BusError, Caller, ReplyEnvelope};
use cubeos_contract::roles::{self, Role};
use cubeos_contract::topics;
use cubeos_contract::validate::truncate;
use rumqttc::QoS;
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Login, Packet, PubAck, PubComp, PubRec, Publish, SubAck, Subscribe,
    SubscribeFilter, SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, info_span, warn};

use super::Shared;
use super::acl::{self, Identity, PublishRule};
use super::transport::ClientIo;

/// Commands one connection may have waiting for their replies at once; more are
/// answered `unavailable` at once, so no client can pile up work in the gate.
const MAX_IN_FLIGHT: usize = 32;

/// Why a session ended early: only ever logged.
#[derive(Debug)]
enum End {
    ClientGone,
    UpstreamGone,
    Protocol(String),
    /// A packet the codec refused.
    Codec(CodecError),
    Kicked,
    /// A connection without credentials outstayed `gate.anonymous_timeout`.
    Expired,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ClientGone => f.write_str("the client left"),
            End::UpstreamGone => f.write_str("the broker closed the connection"),
            End::Protocol(what) => write!(f, "protocol error: {what}"),
            End::Codec(e) => write!(f, "bad packet: {e}"),
            End::Kicked => f.write_str("revoked or replaced"),
            End::Expired => f.write_str("signed out: a connection without credentials may only sign in"),
        }
    }
}

/// The client's own connection to rumqttd, for state, events and device topics.
pub(super) struct Upstream {
    pub rx: OwnedReadHalf,
    pub tx: OwnedWriteHalf,
    /// Bytes rumqttd sent after its CONNACK, not yet parsed.
    pub buf: BytesMut,
}

/// The reading half of [`Upstream`], with what it has read and not parsed.
type UpstreamReader = (OwnedReadHalf, BytesMut);

/// Serves one connection until either side leaves.
pub async fn serve(shared: Arc<Shared>, mut io: ClientIo, address: IpAddr) {
    let mut from_client = BytesMut::new();
    let connect = match tokio::time::timeout(
        shared.connect_timeout,
        next_packet(&mut io.from_client, &mut from_client, shared.max_packet),
    )
    .await
    {
        Ok(Ok(Packet::Connect(connect))) => connect,
        Ok(Ok(other)) => {
            debug!(%address, packet = ?kind(&other), "first packet is not CONNECT");
            return;
        }
        Ok(Err(End::Codec(CodecError::InvalidProtocolLevel(level)))) => {
            // MQTT 5 (or 3.1): say so, rather than hang up without a word.
            debug!(%address, level, "unsupported MQTT version");
            connack(&io, ConnectReturnCode::RefusedProtocolVersion).await;
            return;
        }
        Ok(Err(end)) => {
            debug!(%address, %end, "no usable CONNECT");
            return;
        }
        Err(_) => {
            debug!(%address, "no CONNECT in time");
            return;
        }
    };
    let who = match shared.authenticate(&connect, address).await {
        Ok(who) => who,
        Err(code) => {
            connack(&io, code).await;
            return;
        }
    };
    let span = info_span!("gate", client = %who.client_id, user = %who.user, role = %who.role);
    async move {
        if let Some(will) = &connect.last_will
            && acl::publish_rule(&who, &will.topic) != PublishRule::Forward
        {
            warn!(topic = %truncate(&will.topic, 80), "last will on a topic this client may not publish: refused");
            connack(&io, ConnectReturnCode::NotAuthorized).await;
            return;
        }
        // Without credentials a client may only sign in: a bounded number of such
        // connections, each for a bounded time, and none gets an upstream connection.
        let anonymous = who.role == Role::Anonymous;
        let anonymous_slot = if anonymous {
            match Arc::clone(&shared.anonymous).try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    info!("too many connections without credentials: refused");
                    connack(&io, ConnectReturnCode::ServiceUnavailable).await;
                    return;
                }
            }
        } else {
            None
        };
        let Some((conn_id, kicked)) = shared.register(&who) else {
            info!("client id in use by another principal: refused");
            connack(&io, ConnectReturnCode::BadClientId).await;
            return;
        };
        let (upstream_id, upstream) = if anonymous {
            (None, None)
        } else {
            match shared.open_upstream(&connect).await {
                (n, Ok(u)) => (Some(n), Some(u)),
                (n, Err(e)) => {
                    warn!(error = %e, "broker unreachable");
                    shared.release(n);
                    shared.unregister(conn_id);
                    connack(&io, ConnectReturnCode::ServiceUnavailable).await;
                    return;
                }
            }
        };
        connack(&io, ConnectReturnCode::Success).await;
        let (replies_tx, replies) = mpsc::channel(MAX_IN_FLIGHT);
        let mut session = Session {
            has_will: connect.last_will.is_some(),
            who,
            shared: Arc::clone(&shared),
            to_client: io.to_client.clone(),
            upstream_tx: None,
            pending_subscribes: HashMap::new(),
            filters: Vec::new(),
            roots: HashMap::new(),
            own_unsubscribes: HashSet::new(),
            dropped_exactly_once: HashSet::new(),
            reply_subscribed: false,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            commands: JoinSet::new(),
            replies: replies_tx,
        };
        let lifetime = anonymous.then_some(shared.anonymous_timeout);
        let end = session
            .run(&mut io, from_client, upstream, replies, &kicked, lifetime)
            .await;
        debug!(%end, "session ended");
        // Its upstream connection closes with it, before the id goes back.
        drop(session);
        shared.unregister(conn_id);
        if let Some(n) = upstream_id {
            shared.release(n);
        }
        drop(anonymous_slot);
    }
    .instrument(span)
    .await
}

/// Answers CONNECT: a refusal (after which the client is let go), or success.
async fn connack(io: &ClientIo, code: ConnectReturnCode) {
    let _ = io
        .to_client
        .send(encode(&Packet::ConnAck(ConnAck::new(code, false))))
        .await;
}

/// What became of one filter of a client's SUBSCRIBE.
#[derive(Debug, Clone, Copy)]
enum Grant {
    Denied,
    /// Refused: the connection holds `gate.max_subscriptions` filters already.
    Capped,
    /// Granted by the gate without asking rumqttd: the client's own reply topic
    /// (the gate delivers its replies itself), or a filter it holds already.
    Local(QoS),
    /// Matched by the gate against what arrives on the upstream filter at this
    /// index of the forwarded SUBSCRIBE; granted at this QoS when rumqttd grants
    /// that filter.
    Upstream(QoS, usize),
}

struct Session {
    who: Identity,
    shared: Arc<Shared>,
    to_client: mpsc::Sender<Bytes>,
    /// The writing half of the upstream connection (none without credentials).
    upstream_tx: Option<OwnedWriteHalf>,
    /// SUBSCRIBE packet id -> what became of each of the client's filters, and the
    /// upstream filters sent for them, in order.
    pending_subscribes: HashMap<u16, (Vec<Grant>, Vec<String>)>,
    /// The client's own filters the gate matches upstream messages against, with
    /// the QoS granted (at most `gate.max_subscriptions` of them).
    filters: Vec<(String, QoS)>,
    /// Upstream filters (whole roots) this connection holds, and at which QoS.
    roots: HashMap<String, QoS>,
    /// Packet ids of the gate's own UNSUBSCRIBEs upstream, whose UNSUBACK the
    /// client never asked for.
    own_unsubscribes: HashSet<u16>,
    /// QoS 2 publishes the gate took itself: their PUBREL is answered here.
    dropped_exactly_once: HashSet<u16>,
    has_will: bool,
    /// Whether the client subscribed to its reply topic: replies go only to a
    /// client that asked for them, as MQTT would deliver them.
    reply_subscribed: bool,
    in_flight: Arc<Semaphore>,
    /// Commands waiting for their replies; dropped (aborted) with the session.
    commands: JoinSet<()>,
    /// Where those commands leave their replies for this session.
    replies: mpsc::Sender<ReplyEnvelope>,
}

/// Reads more of the upstream connection; never resolves without one.
async fn read_upstream(reader: &mut Option<UpstreamReader>) -> std::io::Result<usize> {
    match reader {
        Some((rx, buf)) => rx.read_buf(buf).await,
        None => std::future::pending().await,
    }
}

/// Resolves after `lifetime`, or never.
async fn expiry(lifetime: Option<Duration>) {
    match lifetime {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

impl Session {
    async fn run(
        &mut self,
        io: &mut ClientIo,
        mut from_client: BytesMut,
        upstream: Option<Upstream>,
        mut replies: mpsc::Receiver<ReplyEnvelope>,
        kicked: &Notify,
        lifetime: Option<Duration>,
    ) -> End {
        let mut reader = upstream.map(|u| {
            self.upstream_tx = Some(u.tx);
            (u.rx, u.buf)
        });
        // Anything the client sent right behind its CONNECT.
        if let Err(end) = self.drain_client(&mut from_client).await {
            return end;
        }
        let expired = expiry(lifetime);
        tokio::pin!(expired);
        loop {
            tokio::select! {
                _ = kicked.notified() => return End::Kicked,
                _ = &mut expired => return End::Expired,
                chunk = io.from_client.recv() => {
                    let Some(chunk) = chunk else { return End::ClientGone };
                    from_client.extend_from_slice(&chunk);
                    if let Err(end) = self.drain_client(&mut from_client).await {
                        return end;
                    }
                }
                Some(reply) = replies.recv() => {
                    if let Err(end) = self.deliver(reply).await {
                        return end;
                    }
                }
                read = read_upstream(&mut reader) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return End::UpstreamGone;
                    }
                    let Some((_, buf)) = reader.as_mut() else { return End::UpstreamGone };
                    loop {
                        match Packet::read(buf, usize::MAX) {
                            Ok(packet) => {
                                if let Err(end) = self.on_upstream_packet(packet).await {
                                    return end;
                                }
                            }
                            Err(CodecError::InsufficientBytes(_)) => break,
                            Err(e) => return End::Protocol(format!("broker sent a bad packet: {e}")),
                        }
                    }
                }
            }
        }
    }

    async fn drain_client(&mut self, buf: &mut BytesMut) -> Result<(), End> {
        loop {
            match Packet::read(buf, self.shared.max_packet) {
                Ok(packet) => self.on_client_packet(packet).await?,
                Err(CodecError::InsufficientBytes(_)) => return Ok(()),
                Err(e) => return Err(End::Codec(e)),
            }
        }
    }

    async fn on_client_packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(publish) => self.client_publish(publish).await,
            Packet::Subscribe(subscribe) => self.client_subscribe(subscribe).await,
            Packet::Unsubscribe(unsubscribe) => self.client_unsubscribe(unsubscribe).await,
            Packet::PubRel(rel) if self.dropped_exactly_once.remove(&rel.pkid) => {
                self.to_client(&Packet::PubComp(PubComp::new(rel.pkid))).await
            }
            Packet::PingReq if self.upstream_tx.is_none() => self.to_client(&Packet::PingResp).await,
            Packet::Disconnect => {
                // Forwarded only when it matters (it discards the last will):
                // rumqttd 0.20 mishandles DISCONNECT followed by a close, so a
                // connection without a will is simply closed.
                if self.has_will {
                    let _ = self.upstream(&Packet::Disconnect).await;
                }
                Err(End::ClientGone)
            }
            packet @ (Packet::PingReq
            | Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)) => self.upstream(&packet).await,
            other => Err(End::Protocol(format!("unexpected {:?} from a client", kind(&other)))),
        }
    }

    async fn client_publish(&mut self, publish: Publish) -> Result<(), End> {
        match acl::publish_rule(&self.who, &publish.topic) {
            PublishRule::Forward => {
                // On the gate's one long-lived connection, not the client's own:
                // rumqttd keeps each logged message as a slice of the read buffer
                // it arrived in (10 KiB), so a device that connects, publishes once
                // and leaves would pin a buffer per message; on one busy
                // connection, hundreds of messages share each buffer.
                let relayed = self
                    .shared
                    .bus
                    .relay(&publish.topic, publish.retain, publish.payload.to_vec())
                    .await;
                if relayed.is_err() {
                    return Err(End::UpstreamGone);
                }
            }
            PublishRule::Command { service, action } => {
                let (service, action) = (service.to_owned(), action.to_owned());
                self.command(&service, &action, &publish.payload).await?;
            }
            PublishRule::Deny => {
                warn!(topic = %truncate(&publish.topic, 80), "publish denied");
            }
        }
        // The gate took this publish itself (relayed, or a command) or dropped it:
        // acknowledge it here, so the client's session does not stall.
        match publish.qos {
            QoS::AtMostOnce => Ok(()),
            QoS::AtLeastOnce => self.to_client(&Packet::PubAck(PubAck::new(publish.pkid))).await,
            QoS::ExactlyOnce => {
                self.dropped_exactly_once.insert(publish.pkid);
                self.to_client(&Packet::PubRec(PubRec::new(publish.pkid))).await
            }
        }
    }

    /// Sends a client's command on the gate's own bus connection and has its reply
    /// delivered to this session; a refusal is answered at once.
    async fn command(&mut self, service: &str, action: &str, payload: &[u8]) -> Result<(), End> {
        let (id, args) = match self.stamp(service, action, payload) {
            Ok(checked) => checked,
            Err((id, error)) => {
                warn!(service, action = %truncate(action, 64), code = %error.code, "command refused at the gate");
                return self.deliver(ReplyEnvelope::from_result(id, Err(error))).await;
            }
        };
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            let busy = BusError::unavailable(format!(
                "more than {MAX_IN_FLIGHT} commands in flight on this connection"
            ));
            return self.deliver(ReplyEnvelope::from_result(id, Err(busy))).await;
        };
        let caller = Caller {
            user: self.who.user.clone(),
            role: self.who.role,
            session: self.who.session.clone(),
            address: Some(self.who.address.to_string()),
        };
        let (shared, replies) = (Arc::clone(&self.shared), self.replies.clone());
        let (service, action) = (service.to_owned(), action.to_owned());
        while self.commands.try_join_next().is_some() {}
        self.commands.spawn(async move {
            let result = shared
                .bus
                .request_as(&service, &action, args, Some(caller), shared.command_timeout)
                .await;
            let mut reply = ReplyEnvelope::from_result(id, result);
            // Tokens in a reply travel sealed on the loopback bus; this client asked.
            if let Some(data) = reply.data.as_mut() {
                shared.secrets.open_fields(data);
            }
            drop(permit);
            let _ = replies.send(reply).await;
        });
        Ok(())
    }

    /// Checks a command and returns its request id and arguments, secret fields
    /// sealed. A refusal carries the request id, to answer it.
    fn stamp(&self, service: &str, action: &str, payload: &[u8]) -> Result<(String, Value), (String, BusError)> {
        let mut envelope = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err((
                    String::new(),
                    BusError::bad_request("a command must be a JSON object envelope"),
                ));
            }
        };
        let id = match envelope.get("id") {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        if envelope.get("reply_to").and_then(Value::as_str) != Some(self.who.reply_topic()) {
            let msg = format!("reply_to must be this client's reply topic, {}", self.who.reply_topic());
            return Err((id, BusError::forbidden(msg)));
        }
        roles::check_call(self.who.role, service, action).map_err(|e| (id.clone(), e))?;
        let args = envelope.remove("args").unwrap_or(Value::Null);
        // Re-encoded through the command's type, under the key: every field whose
        // type is a secret travels sealed, whatever it is called. The role check
        // above lets through an action the contract does not know only for an
        // admin; it goes out without its arguments (they could hold a secret the
        // contract cannot see), to be refused by the service as unknown.
        let Some(spec) = cubeos_contract::api::find(service, action) else {
            return Ok((id, Value::Null));
        };
        match self.shared.secrets.sealing(|| (spec.reencode)(args)) {
            Ok(args) => Ok((id, args)),
            Err(e) => Err((
                id,
                BusError::bad_request(format!("invalid arguments for {action}: {e}")),
            )),
        }
    }

    async fn client_subscribe(&mut self, subscribe: Subscribe) -> Result<(), End> {
        // Upstream filters to (re)subscribe, with the highest QoS asked under each.
        let mut upstream: Vec<(String, QoS)> = Vec::new();
        let mut grants = Vec::with_capacity(subscribe.filters.len());
        for filter in &subscribe.filters {
            grants.push(self.grant(&filter.path, filter.qos, &mut upstream));
        }
        // One line per SUBSCRIBE, however many filters it refused: a packet of a
        // thousand filters must not become a thousand log lines.
        let refused = |kind: Grant| {
            let mut of_kind = subscribe
                .filters
                .iter()
                .zip(&grants)
                .filter(move |(_, g)| std::mem::discriminant(*g) == std::mem::discriminant(&kind));
            of_kind
                .next()
                .map(|(first, _)| (truncate(&first.path, 80).to_owned(), 1 + of_kind.count()))
        };
        if let Some((first, count)) = refused(Grant::Denied) {
            warn!(%first, count, "subscriptions denied");
        }
        if let Some((first, count)) = refused(Grant::Capped) {
            info!(
                %first,
                count,
                max = self.shared.max_subscriptions,
                "subscriptions refused: too many on this connection (gate.max_subscriptions)"
            );
        }
        if upstream.is_empty() {
            let codes = grants.iter().map(|g| local_code(*g)).collect();
            return self
                .to_client(&Packet::SubAck(SubAck::new(subscribe.pkid, codes)))
                .await;
        }
        // rumqttd sends retained messages only for a filter new to a connection:
        // one this connection holds already is dropped and taken again, so that the
        // client's new filter gets the retained state it matches.
        let held: Vec<String> = upstream
            .iter()
            .filter(|(root, _)| self.roots.contains_key(root))
            .map(|(root, _)| root.clone())
            .collect();
        if !held.is_empty() {
            self.own_unsubscribes.insert(subscribe.pkid);
            self.upstream(&Packet::Unsubscribe(Unsubscribe {
                pkid: subscribe.pkid,
                topics: held,
            }))
            .await?;
        }
        for (root, qos) in &upstream {
            self.roots.insert(root.clone(), *qos);
        }
        let order = upstream.iter().map(|(root, _)| root.clone()).collect();
        self.pending_subscribes.insert(subscribe.pkid, (grants, order));
        let forwarded = Subscribe {
            pkid: subscribe.pkid,
            filters: upstream
                .into_iter()
                .map(|(root, qos)| SubscribeFilter::new(root, qos))
                .collect(),
        };
        self.upstream(&Packet::Subscribe(forwarded)).await
    }

    /// What becomes of one filter of a SUBSCRIBE; an upstream filter it needs is
    /// added to `upstream`.
    fn grant(&mut self, path: &str, asked: QoS, upstream: &mut Vec<(String, QoS)>) -> Grant {
        let Some(qos) = acl::subscribe_grant(&self.who, path, asked) else {
            return Grant::Denied;
        };
        if path == self.who.reply_topic() {
            self.reply_subscribed = true;
            return Grant::Local(qos);
        }
        let Some(root) = acl::upstream_filter(&self.who, path).filter(|_| self.upstream_tx.is_some()) else {
            return Grant::Denied;
        };
        // Delivery to the client is at most QoS 1: the gate relays PUBACKs, it
        // keeps no QoS 2 state of its own for messages it forwards.
        let qos = lower(qos, QoS::AtLeastOnce);
        let held = self.roots.get(&root).copied();
        let full = self.filters.len() >= self.shared.max_subscriptions;
        match self.filters.iter_mut().find(|(p, _)| p == path) {
            // The same filter again at the same QoS: nothing to ask rumqttd. Taking
            // the root again would resend every retained message under it, for
            // every such packet a client cares to send.
            Some(existing) if existing.1 == qos && held.is_some() => return Grant::Local(qos),
            Some(existing) => existing.1 = qos,
            None if full => return Grant::Capped,
            None => self.filters.push((path.to_owned(), qos)),
        }
        let held = held.unwrap_or(QoS::AtMostOnce);
        let index = match upstream.iter().position(|(r, _)| *r == root) {
            Some(i) => {
                upstream[i].1 = higher(upstream[i].1, qos);
                i
            }
            None => {
                upstream.push((root, higher(qos, held)));
                upstream.len() - 1
            }
        };
        Grant::Upstream(qos, index)
    }

    async fn client_unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), End> {
        // The upstream filters stay (there are only a few): the gate simply stops
        // matching the client's.
        for topic in &unsubscribe.topics {
            if topic == self.who.reply_topic() {
                self.reply_subscribed = false;
            }
            self.filters.retain(|(p, _)| p != topic);
        }
        self.to_client(&Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid))).await
    }

    async fn on_upstream_packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::SubAck(mut suback) => {
                let Some((grants, order)) = self.pending_subscribes.remove(&suback.pkid) else {
                    return Ok(());
                };
                let upstream_codes = suback.return_codes;
                let granted_root = |i: usize| {
                    order.get(i).is_some()
                        && upstream_codes
                            .get(i)
                            .is_some_and(|c| *c != SubscribeReasonCode::Failure)
                };
                suback.return_codes = grants
                    .iter()
                    .map(|g| match g {
                        Grant::Upstream(qos, i) if granted_root(*i) => SubscribeReasonCode::Success(*qos),
                        Grant::Upstream(..) => SubscribeReasonCode::Failure,
                        other => local_code(*other),
                    })
                    .collect();
                self.to_client(&Packet::SubAck(suback)).await
            }
            Packet::UnsubAck(ack) if self.own_unsubscribes.remove(&ack.pkid) => Ok(()),
            Packet::Publish(publish) => self.forward(publish).await,
            other => self.to_client(&other).await,
        }
    }

    /// Delivers a message from an upstream root to the client if one of its own
    /// filters matches it, at the highest QoS granted among those; acknowledges
    /// upstream itself what the client will not.
    async fn forward(&mut self, mut publish: Publish) -> Result<(), End> {
        let granted = self
            .filters
            .iter()
            .filter(|(filter, _)| topics::matches(filter, &publish.topic))
            .map(|(_, qos)| *qos)
            .reduce(higher);
        let delivery = granted.map(|g| lower(g, publish.qos));
        if publish.qos != QoS::AtMostOnce && delivery != Some(publish.qos) {
            self.upstream(&Packet::PubAck(PubAck::new(publish.pkid))).await?;
        }
        let Some(qos) = delivery else { return Ok(()) };
        if qos == QoS::AtMostOnce {
            publish.qos = QoS::AtMostOnce;
            publish.pkid = 0;
        }
        self.to_client(&Packet::Publish(publish)).await
    }

    /// Hands a reply to the client, on its own reply topic, if it subscribed to it.
    async fn deliver(&mut self, reply: ReplyEnvelope) -> Result<(), End> {
        if !self.reply_subscribed {
            debug!(id = %truncate(&reply.id, 64), "reply dropped: the client is not subscribed to its reply topic");
            return Ok(());
        }
        let payload = serde_json::to_vec(&reply).unwrap_or_default();
        let publish = Publish::new(self.who.reply_topic(), QoS::AtMostOnce, payload);
        self.to_client(&Packet::Publish(publish)).await
    }

    async fn to_client(&self, packet: &Packet) -> Result<(), End> {
        self.to_client.send(encode(packet)).await.map_err(|_| End::ClientGone)
    }

    async fn upstream(&mut self, packet: &Packet) -> Result<(), End> {
        let Some(tx) = self.upstream_tx.as_mut() else {
            // A client without credentials has no upstream: nothing it sends
            // (acknowledgements of messages it never got) goes anywhere.
            return Ok(());
        };
        tx.write_all(&encode(packet)).await.map_err(|_| End::UpstreamGone)
    }
}

/// The lower of two QoS levels (rumqttc's `QoS` is only partially ordered).
fn lower(a: QoS, b: QoS) -> QoS {
    if a as u8 <= b as u8 { a } else { b }
}

/// The higher of two QoS levels.
fn higher(a: QoS, b: QoS) -> QoS {
    if a as u8 >= b as u8 { a } else { b }
}

/// The SUBACK code of a filter the gate answered itself.
fn local_code(grant: Grant) -> SubscribeReasonCode {
    match grant {
        Grant::Local(QoS::AtMostOnce) => SubscribeReasonCode::Success(QoS::AtMostOnce),
        Grant::Local(QoS::AtLeastOnce) => SubscribeReasonCode::Success(QoS::AtLeastOnce),
        Grant::Local(QoS::ExactlyOnce) => SubscribeReasonCode::Success(QoS::ExactlyOnce),
        Grant::Denied | Grant::Capped | Grant::Upstream(..) => SubscribeReasonCode::Failure,
    }
}

/// Opens this client's own connection to rumqttd, signed in as the services are.
pub(super) async fn connect_upstream(
    addr: std::net::SocketAddr,
    login: &Login,
    client: &Connect,
    upstream_id: String,
) -> std::io::Result<Upstream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut rx, mut tx) = stream.into_split();
    let mut connect = Connect::new(upstream_id);
    // rumqttd times a connection out after 1.5 x keep-alive, so 0 ("never") would
    // end it at once.
    connect.keep_alive = if client.keep_alive == 0 {
        u16::MAX
    } else {
        client.keep_alive
    };
    connect.clean_session = true;
    connect.last_will = client.last_will.clone();
    connect.login = Some(login.clone());
    tx.write_all(&encode(&Packet::Connect(connect))).await?;
    let mut buf = BytesMut::new();
    loop {
        match Packet::read(&mut buf, 1024) {
            Ok(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => return Ok(Upstream { rx, tx, buf }),
            Ok(other) => return Err(std::io::Error::other(format!("broker answered {:?}", kind(&other)))),
            Err(CodecError::InsufficientBytes(_)) => {
                if rx.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::Error::other("broker closed the connection"));
                }
            }
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
    }
}

/// Reads until one whole packet is buffered.
async fn next_packet(rx: &mut mpsc::Receiver<Bytes>, buf: &mut BytesMut, max: usize) -> Result<Packet, End> {
    loop {
        match Packet::read(buf, max) {
            Ok(packet) => return Ok(packet),
            Err(CodecError::InsufficientBytes(_)) => {
                let chunk = rx.recv().await.ok_or(End::ClientGone)?;
                buf.extend_from_slice(&chunk);
            }
            Err(e) => return Err(End::Codec(e)),
        }
    }
}

fn encode(packet: &Packet) -> Bytes {
    let mut buf = BytesMut::new();
    // Only packets the codec itself parsed or built are encoded, within its limits.
    let _ = packet.write(&mut buf, usize::MAX);
    buf.freeze()
}

fn kind(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}
