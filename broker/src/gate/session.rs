//! One outside client's session: CONNECT and sign-in, then every packet in both
//! directions between the client and its own upstream connection to rumqttd.
//!
//! Client to broker, each packet is checked against [`acl`](super::acl): commands get
//! the caller stamped and their secret fields sealed; denied publishes are dropped
//! and logged; denied subscriptions get SUBACK 0x80 while the rest go through.
//! Broker to client, replies have their sealed fields opened; the rest passes as is.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cubeos_shared::envelope::{BusError, Caller, ReplyEnvelope};
use cubeos_shared::roles;
use cubeos_shared::secrets;
use cubeos_shared::validate::truncate;
use rumqttc::QoS;
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Login, Packet, PubAck, PubComp, PubRec, Publish, SubAck, Subscribe,
    SubscribeFilter, SubscribeReasonCode,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, mpsc};
use tracing::{Instrument, debug, info_span, warn};

use super::Shared;
use super::acl::{self, Identity, PublishRule};
use super::transport::ClientIo;

/// Why a session ended early: only ever logged.
#[derive(Debug)]
enum End {
    ClientGone,
    UpstreamGone,
    Protocol(String),
    /// A packet the codec refused.
    Codec(CodecError),
    Kicked,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ClientGone => f.write_str("the client left"),
            End::UpstreamGone => f.write_str("the broker closed the connection"),
            End::Protocol(what) => write!(f, "protocol error: {what}"),
            End::Codec(e) => write!(f, "bad packet: {e}"),
            End::Kicked => f.write_str("revoked or replaced"),
        }
    }
}

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
        let (upstream_rx, upstream_tx, from_upstream) = match shared.open_upstream(&connect).await {
            Ok(u) => u,
            Err(e) => {
                warn!(error = %e, "broker unreachable");
                connack(&io, ConnectReturnCode::ServiceUnavailable).await;
                return;
            }
        };
        let (conn_id, kicked) = shared.register(&who);
        connack(&io, ConnectReturnCode::Success).await;
        let mut session = Session {
            has_will: connect.last_will.is_some(),
            who,
            shared: Arc::clone(&shared),
            to_client: io.to_client.clone(),
            upstream_tx,
            pending_subscribes: HashMap::new(),
            dropped_exactly_once: HashSet::new(),
        };
        let end = session
            .run(&mut io, from_client, upstream_rx, from_upstream, &kicked)
            .await;
        debug!(%end, "session ended");
        shared.unregister(conn_id);
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

struct Session {
    who: Identity,
    shared: Arc<Shared>,
    to_client: mpsc::Sender<Bytes>,
    upstream_tx: OwnedWriteHalf,
    /// SUBSCRIBE packet id -> which of the client's filters were forwarded.
    pending_subscribes: HashMap<u16, Vec<Option<QoS>>>,
    /// QoS 2 publishes that were refused: their PUBREL is answered here.
    dropped_exactly_once: HashSet<u16>,
    has_will: bool,
}

impl Session {
    async fn run(
        &mut self,
        io: &mut ClientIo,
        mut from_client: BytesMut,
        mut upstream_rx: tokio::net::tcp::OwnedReadHalf,
        mut from_upstream: BytesMut,
        kicked: &Notify,
    ) -> End {
        // Anything the client sent right behind its CONNECT.
        if let Err(end) = self.drain_client(&mut from_client).await {
            return end;
        }
        loop {
            tokio::select! {
                _ = kicked.notified() => return End::Kicked,
                chunk = io.from_client.recv() => {
                    let Some(chunk) = chunk else { return End::ClientGone };
                    from_client.extend_from_slice(&chunk);
                    if let Err(end) = self.drain_client(&mut from_client).await {
                        return end;
                    }
                }
                read = upstream_rx.read_buf(&mut from_upstream) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return End::UpstreamGone;
                    }
                    loop {
                        match Packet::read(&mut from_upstream, usize::MAX) {
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
            Packet::PubRel(rel) if self.dropped_exactly_once.remove(&rel.pkid) => {
                self.to_client(&Packet::PubComp(PubComp::new(rel.pkid))).await
            }
            Packet::Disconnect => {
                // Forwarded only when it matters (it discards the last will):
                // rumqttd 0.20 mishandles DISCONNECT followed by a close, so a
                // connection without a will is simply closed.
                if self.has_will {
                    let _ = self.upstream(&Packet::Disconnect).await;
                }
                Err(End::ClientGone)
            }
            packet @ (Packet::Unsubscribe(_)
            | Packet::PingReq
            | Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)) => self.upstream(&packet).await,
            other => Err(End::Protocol(format!("unexpected {:?} from a client", kind(&other)))),
        }
    }

    async fn client_publish(&mut self, mut publish: Publish) -> Result<(), End> {
        match acl::publish_rule(&self.who, &publish.topic) {
            PublishRule::Forward => return self.upstream(&Packet::Publish(publish)).await,
            PublishRule::Command { service, action } => match self.stamp(service, action, &publish.payload) {
                Ok(payload) => {
                    publish.payload = payload;
                    publish.retain = false;
                    return self.upstream(&Packet::Publish(publish)).await;
                }
                Err((id, error)) => {
                    warn!(topic = %truncate(&publish.topic, 80), code = %error.code, "command refused at the gate");
                    self.reply_directly(id, error).await?;
                }
            },
            PublishRule::Deny => {
                warn!(topic = %truncate(&publish.topic, 80), "publish denied");
            }
        }
        // Acknowledge what was dropped, so the client's session does not stall.
        match publish.qos {
            QoS::AtMostOnce => Ok(()),
            QoS::AtLeastOnce => self.to_client(&Packet::PubAck(PubAck::new(publish.pkid))).await,
            QoS::ExactlyOnce => {
                self.dropped_exactly_once.insert(publish.pkid);
                self.to_client(&Packet::PubRec(PubRec::new(publish.pkid))).await
            }
        }
    }

    /// Checks a command and returns the payload to forward: the caller stamped
    /// (any the client sent is dropped), secret arguments sealed. A refusal carries
    /// the request id, to answer it.
    fn stamp(&self, service: &str, action: &str, payload: &[u8]) -> Result<Bytes, (String, BusError)> {
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
        let caller = Caller {
            user: self.who.user.clone(),
            role: self.who.role,
            session: self.who.session.clone(),
            address: Some(self.who.address.to_string()),
        };
        envelope.insert("caller".into(), serde_json::to_value(caller).unwrap_or_default());
        if let Some(args) = envelope.get_mut("args")
            && self.shared.secrets.seal_fields(args).is_err()
        {
            return Err((id, BusError::internal("could not seal the command's secrets")));
        }
        serde_json::to_vec(&Value::Object(envelope))
            .map(Bytes::from)
            .map_err(|_| (id, BusError::internal("could not encode the command")))
    }

    async fn client_subscribe(&mut self, subscribe: Subscribe) -> Result<(), End> {
        let grants: Vec<Option<QoS>> = subscribe
            .filters
            .iter()
            .map(|f| acl::subscribe_grant(&self.who, &f.path, f.qos))
            .collect();
        for (filter, grant) in subscribe.filters.iter().zip(&grants) {
            if grant.is_none() {
                warn!(filter = %truncate(&filter.path, 80), "subscription denied");
            }
        }
        let allowed: Vec<SubscribeFilter> = subscribe
            .filters
            .iter()
            .zip(&grants)
            .filter_map(|(f, g)| g.map(|qos| SubscribeFilter::new(f.path.clone(), qos)))
            .collect();
        if allowed.is_empty() {
            let codes = vec![SubscribeReasonCode::Failure; grants.len()];
            return self
                .to_client(&Packet::SubAck(SubAck::new(subscribe.pkid, codes)))
                .await;
        }
        self.pending_subscribes.insert(subscribe.pkid, grants);
        let forwarded = Subscribe {
            pkid: subscribe.pkid,
            filters: allowed,
        };
        self.upstream(&Packet::Subscribe(forwarded)).await
    }

    async fn on_upstream_packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(mut publish) => {
                if publish.topic == self.who.reply_topic()
                    && memchr(&publish.payload, secrets::SEALED_PREFIX.as_bytes())
                    && let Ok(mut reply) = serde_json::from_slice::<Value>(&publish.payload)
                    && self.shared.secrets.open_fields(&mut reply)
                {
                    publish.payload = Bytes::from(serde_json::to_vec(&reply).unwrap_or_default());
                }
                self.to_client(&Packet::Publish(publish)).await
            }
            Packet::SubAck(mut suback) => {
                if let Some(grants) = self.pending_subscribes.remove(&suback.pkid) {
                    let mut granted = suback.return_codes.into_iter();
                    suback.return_codes = grants
                        .iter()
                        .map(|g| match g {
                            Some(_) => granted.next().unwrap_or(SubscribeReasonCode::Failure),
                            None => SubscribeReasonCode::Failure,
                        })
                        .collect();
                }
                self.to_client(&Packet::SubAck(suback)).await
            }
            other => self.to_client(&other).await,
        }
    }

    /// Answers a refused command on the client's own reply topic, without the broker.
    async fn reply_directly(&mut self, id: String, error: BusError) -> Result<(), End> {
        let reply = ReplyEnvelope::from_result(id, Err(error));
        let payload = serde_json::to_vec(&reply).unwrap_or_default();
        let publish = Publish::new(self.who.reply_topic(), QoS::AtMostOnce, payload);
        self.to_client(&Packet::Publish(publish)).await
    }

    async fn to_client(&self, packet: &Packet) -> Result<(), End> {
        self.to_client.send(encode(packet)).await.map_err(|_| End::ClientGone)
    }

    async fn upstream(&mut self, packet: &Packet) -> Result<(), End> {
        self.upstream_tx
            .write_all(&encode(packet))
            .await
            .map_err(|_| End::UpstreamGone)
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

/// Opens this client's own connection to rumqttd, signed in as the services are.
pub(super) async fn connect_upstream(
    addr: std::net::SocketAddr,
    login: &Login,
    client: &Connect,
    upstream_id: String,
) -> std::io::Result<(tokio::net::tcp::OwnedReadHalf, OwnedWriteHalf, BytesMut)> {
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
            Ok(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => return Ok((rx, tx, buf)),
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

fn memchr(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
