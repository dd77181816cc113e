//! The two ways outside clients reach the gate — MQTT over TCP, and MQTT over
//! WebSocket (binary frames, `mqtt` subprotocol) — turned into one shape: a channel of
//! byte chunks in and a channel of byte chunks out. The session logic never knows
//! which it is talking to.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Chunks in flight per direction: enough to absorb a burst, small enough that a
/// stalled client pushes back on its own connection only.
const DEPTH: usize = 256;

/// One client's byte streams.
pub struct ClientIo {
    pub from_client: mpsc::Receiver<Bytes>,
    pub to_client: mpsc::Sender<Bytes>,
}

/// Plain TCP.
pub fn tcp(stream: TcpStream) -> ClientIo {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (in_tx, from_client) = mpsc::channel(DEPTH);
    let (to_client, mut out_rx) = mpsc::channel::<Bytes>(DEPTH);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if in_tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(chunk) = out_rx.recv().await {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    ClientIo { from_client, to_client }
}

/// WebSocket: completes the HTTP upgrade (the client must offer the `mqtt`
/// subprotocol) and carries MQTT bytes in binary frames, none larger than
/// `max_packet` (tungstenite's own defaults allow 64 MiB messages, and frames
/// queue before the MQTT codec ever sees them). The stream is the gate's own TCP
/// connection, or one the dashboard's server accepted and hands over.
pub async fn websocket<S>(stream: S, max_packet: usize) -> Option<ClientIo>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = WebSocketConfig::default()
        .max_message_size(Some(max_packet))
        .max_frame_size(Some(max_packet));
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, choose_mqtt_subprotocol, Some(limits))
        .await
        .ok()?;
    let (mut sink, mut source) = ws.split();
    let (in_tx, from_client) = mpsc::channel(DEPTH);
    let (to_client, mut out_rx) = mpsc::channel::<Bytes>(DEPTH);
    tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            let chunk = match message {
                Message::Binary(data) => data,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                // MQTT over WebSocket is binary only (MQTT 3.1.1 section 6).
                Message::Text(_) | Message::Close(_) => break,
            };
            if in_tx.send(chunk).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(chunk) = out_rx.recv().await {
            if sink.send(Message::Binary(chunk)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    Some(ClientIo { from_client, to_client })
}

// The signature is the one tungstenite's handshake callback requires.
#[allow(clippy::result_large_err)]
fn choose_mqtt_subprotocol(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offers_mqtt = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "mqtt");
    if !offers_mqtt {
        let mut refusal = ErrorResponse::new(Some("MQTT over WebSocket needs the 'mqtt' subprotocol".into()));
        *refusal.status_mut() = StatusCode::BAD_REQUEST;
        return Err(refusal);
    }
    response
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    Ok(response)
}
