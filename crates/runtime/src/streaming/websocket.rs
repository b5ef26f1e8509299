//! The WebSocket side: the handshake checks, subprotocol negotiation, and the channel
//! multiplexer (`wsstream` in apimachinery).
//!
//! Every message carries one channel: binary protocols prefix the payload with the channel
//! byte; the base64 protocols send text whose first character is the channel digit and whose
//! rest is base64. v5 adds a client message `[255, n]` that half-closes channel n (so stdin can
//! end without closing the socket). The first message the server sends is an empty one on the
//! lowest writable channel, which tells clients the streams are ready.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::pipe::{ChanReader, ChanWriter, Framer};
use super::protocol::{
    CHANNEL_CLOSE, WS_PROTOCOL_V1_BASE64, WS_PROTOCOL_V4_BASE64, WS_PROTOCOL_V5,
};

/// How a negotiated subprotocol frames messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Codec {
    pub base64: bool,
    /// v5: the client may half-close channels.
    pub stream_close: bool,
}

impl Codec {
    pub(crate) fn for_protocol(p: &str) -> Codec {
        Codec {
            base64: p == WS_PROTOCOL_V1_BASE64 || p == WS_PROTOCOL_V4_BASE64,
            stream_close: p == WS_PROTOCOL_V5,
        }
    }
}

/// What a channel carries, from the server's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChannelKind {
    /// Unused (not requested): its messages are dropped.
    Off,
    Read,
    Write,
    ReadWrite,
}

impl ChannelKind {
    fn readable(self) -> bool {
        matches!(self, ChannelKind::Read | ChannelKind::ReadWrite)
    }
    fn writable(self) -> bool {
        matches!(self, ChannelKind::Write | ChannelKind::ReadWrite)
    }
}

/// `Upgrade: websocket` with `Connection` containing the `upgrade` token.
pub(crate) fn is_websocket_request(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    upgrade && connection_has_upgrade(headers)
}

pub(crate) fn connection_has_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Checks the handshake and picks the subprotocol: the first the client lists that `allowed`
/// has; a client listing none gets the unnamed protocol if `allowed` contains `""`.
/// Errors are complete HTTP responses: 400 for a bad handshake, 403 when no protocol matches
/// (what golang.org/x/net/websocket answers for the kubelet).
pub(crate) fn accept(
    headers: &HeaderMap,
    allowed: &[&str],
) -> Result<(String, Response<String>), Response<String>> {
    let version = headers
        .get(http::header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if version.trim() != "13" {
        let mut resp = plain(
            StatusCode::BAD_REQUEST,
            "unsupported WebSocket version; use 13\n",
        );
        resp.headers_mut().insert(
            http::header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(resp);
    }
    let Some(key) = headers.get(http::header::SEC_WEBSOCKET_KEY) else {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "missing Sec-WebSocket-Key\n",
        ));
    };
    let requested: Vec<String> = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let chosen = if requested.is_empty() {
        allowed.contains(&"").then(String::new)
    } else {
        requested
            .iter()
            .find(|p| allowed.contains(&p.as_str()))
            .cloned()
    };
    let Some(chosen) = chosen else {
        let offered: Vec<&str> = allowed.iter().copied().filter(|p| !p.is_empty()).collect();
        return Err(plain(
            StatusCode::FORBIDDEN,
            &format!(
                "requested protocol(s) are not supported: {requested:?}; supports {offered:?}\n"
            ),
        ));
    };
    let accept_key = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::SEC_WEBSOCKET_ACCEPT, accept_key);
    if !chosen.is_empty() {
        resp = resp.header(http::header::SEC_WEBSOCKET_PROTOCOL, chosen.as_str());
    }
    let resp = resp
        .body(String::new())
        .expect("static response parts are valid");
    Ok((chosen, resp))
}

pub(crate) fn plain(status: StatusCode, body: &str) -> Response<String> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body.to_owned())
        .expect("static response parts are valid")
}

pub(crate) enum WsOut {
    Data(u8, Bytes),
    Close,
}

/// A running multiplexed WebSocket connection.
pub(crate) struct WsConn {
    out: mpsc::Sender<WsOut>,
    closed: CancellationToken,
    tasks: Vec<tokio::task::AbortHandle>,
}

/// The per-channel ends, indexed by channel number.
pub(crate) struct Channels {
    pub readers: Vec<Option<ChanReader>>,
    pub writers: Vec<Option<ChanWriter<WsOut>>>,
}

const INBOUND_DEPTH: usize = 16;

impl WsConn {
    /// Takes over an upgraded server-side socket.
    pub(crate) async fn start<IO>(
        io: IO,
        codec: Codec,
        kinds: &[ChannelKind],
        idle_timeout: Option<Duration>,
    ) -> (WsConn, Channels)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        let (sink, stream) = ws.split();
        let (out_tx, out_rx) = mpsc::channel(64);
        let closed = CancellationToken::new();
        let activity = Arc::new(AtomicU64::new(0));

        let mut readers = Vec::new();
        let mut inbound = Vec::new();
        let mut writers = Vec::new();
        for (ch, kind) in kinds.iter().enumerate() {
            if kind.readable() {
                let (tx, rx) = mpsc::channel(INBOUND_DEPTH);
                readers.push(Some(ChanReader::new(rx)));
                inbound.push(Some(tx));
            } else {
                readers.push(None);
                inbound.push(None);
            }
            writers.push(kind.writable().then(|| {
                let ch = ch as u8;
                let framer: Framer<WsOut> =
                    Arc::new(move |d: Option<Bytes>| d.map(|d| WsOut::Data(ch, d)));
                ChanWriter::new(out_tx.clone(), framer, None)
            }));
        }
        let writer = tokio::spawn(write_loop(sink, out_rx, codec, activity.clone()));
        let reader = tokio::spawn(read_loop(
            stream,
            inbound,
            codec,
            closed.clone(),
            activity,
            idle_timeout,
        ));
        (
            WsConn {
                out: out_tx,
                closed,
                tasks: vec![writer.abort_handle(), reader.abort_handle()],
            },
            Channels { readers, writers },
        )
    }

    /// Queues one message on `channel` (an empty one is the "ready" signal).
    pub(crate) async fn send(&self, channel: u8, data: Bytes) {
        let _ = self.out.send(WsOut::Data(channel, data)).await;
    }

    /// Sends a close frame after everything queued, waits up to `linger` for the client to
    /// close its side, then drops the socket.
    pub(crate) async fn close(self, linger: Duration) {
        let _ = self.out.send(WsOut::Close).await;
        let _ = tokio::time::timeout(linger, self.closed.cancelled()).await;
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn write_loop<S>(
    mut sink: S,
    mut rx: mpsc::Receiver<WsOut>,
    codec: Codec,
    activity: Arc<AtomicU64>,
) where
    S: futures_util::Sink<Message> + Unpin,
{
    while let Some(msg) = rx.recv().await {
        let msg = match msg {
            WsOut::Data(ch, data) => encode(codec, ch, &data),
            WsOut::Close => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    })))
                    .await;
                break;
            }
        };
        if sink.send(msg).await.is_err() {
            break;
        }
        activity.fetch_add(1, Ordering::Relaxed);
    }
    rx.close();
}

pub(crate) fn encode(codec: Codec, ch: u8, data: &[u8]) -> Message {
    if codec.base64 {
        let mut s = String::with_capacity(1 + data.len() * 4 / 3 + 4);
        s.push(char::from(b'0' + ch));
        base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
        Message::Text(s)
    } else {
        let mut v = Vec::with_capacity(1 + data.len());
        v.push(ch);
        v.extend_from_slice(data);
        Message::Binary(v)
    }
}

async fn read_loop<S>(
    mut stream: S,
    mut inbound: Vec<Option<mpsc::Sender<Bytes>>>,
    codec: Codec,
    closed: CancellationToken,
    activity: Arc<AtomicU64>,
    idle_timeout: Option<Duration>,
) where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut seen = activity.load(Ordering::Relaxed);
    loop {
        let next = match idle_timeout {
            None => stream.next().await,
            Some(idle) => tokio::select! {
                m = stream.next() => m,
                () = tokio::time::sleep(idle) => {
                    let now = activity.load(Ordering::Relaxed);
                    if now == seen {
                        tracing::debug!("WebSocket stream idle for {idle:?}; closing");
                        break;
                    }
                    seen = now;
                    continue;
                }
            },
        };
        let payload: Vec<u8> = match next {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Text(t))) => t.into_bytes(),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        };
        activity.fetch_add(1, Ordering::Relaxed);
        if payload.is_empty() {
            continue;
        }
        if codec.stream_close && payload[0] == CHANNEL_CLOSE {
            if payload.len() != 2 {
                tracing::debug!("malformed WebSocket close-channel message; closing");
                break;
            }
            // Dropping the sender is the half-close: the reader sees end-of-file.
            if let Some(slot) = inbound.get_mut(usize::from(payload[1])) {
                *slot = None;
            }
            continue;
        }
        let (ch, data) = if codec.base64 {
            let ch = payload[0].wrapping_sub(b'0');
            match base64::engine::general_purpose::STANDARD.decode(&payload[1..]) {
                Ok(d) => (ch, d),
                Err(_) => continue,
            }
        } else {
            (payload[0], payload[1..].to_vec())
        };
        if data.is_empty() {
            continue;
        }
        if let Some(Some(tx)) = inbound.get(usize::from(ch)) {
            // A consumer that went away just loses the data.
            let _ = tx.send(Bytes::from(data)).await;
        }
    }
    inbound.clear();
    closed.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(protocols: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(
            http::header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        h.insert(
            http::header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        if !protocols.is_empty() {
            h.insert(
                http::header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(&protocols.join(", ")).unwrap(),
            );
        }
        h
    }

    #[test]
    fn negotiation_follows_the_client_order() {
        let allowed = ["", "v4.channel.k8s.io", "v5.channel.k8s.io"];
        assert!(is_websocket_request(&req(&[])));
        let (p, resp) =
            accept(&req(&["v5.channel.k8s.io", "v4.channel.k8s.io"]), &allowed).unwrap();
        assert_eq!(p, "v5.channel.k8s.io");
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            resp.headers()[http::header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let (p, resp) = accept(&req(&[]), &allowed).unwrap();
        assert_eq!(p, "");
        assert!(resp
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .is_none());
        let err = accept(&req(&["v9.channel.k8s.io"]), &allowed).unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        let mut bad = req(&[]);
        bad.insert(
            http::header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("8"),
        );
        assert_eq!(
            accept(&bad, &allowed).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn message_encoding() {
        let bin = Codec::for_protocol("v4.channel.k8s.io");
        assert_eq!(encode(bin, 1, b"hi"), Message::Binary(vec![1, b'h', b'i']));
        let b64 = Codec::for_protocol("base64.channel.k8s.io");
        assert_eq!(encode(b64, 2, b"hi"), Message::Text("2aGk=".into()));
        assert!(Codec::for_protocol("v5.channel.k8s.io").stream_close);
    }
}
