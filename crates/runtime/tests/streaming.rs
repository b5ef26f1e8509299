//! The streaming server end to end: a fake runtime behind the real server, driven by the SPDY
//! client in `streaming::spdy::client` and by a real WebSocket client (tokio-tungstenite), as
//! kubectl/crictl would. Port-forward goes into a real network namespace (root).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deckhand_runtime::cri::api;
use deckhand_runtime::streaming::protocol::*;
use deckhand_runtime::streaming::spdy::client::{self, ClientError, RemoteCommandOptions};
use deckhand_runtime::streaming::status::Status;
use deckhand_runtime::streaming::{
    Config, NetnsPortForwarder, StreamError, StreamingRuntime, StreamingServer, Streams,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Commands: `echo` copies stdin to stdout; `exit N` writes to both outputs and exits N;
/// `sizes` prints each terminal size it is sent. Container `missing` does not exist.
struct Fake {
    netns: Option<PathBuf>,
}

#[tonic::async_trait]
impl StreamingRuntime for Fake {
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        mut s: Streams,
    ) -> Result<i32, StreamError> {
        if container_id == "missing" {
            return Err(StreamError::NotFound(format!(
                "container {container_id} not found"
            )));
        }
        match cmd.first().map(String::as_str) {
            Some("echo") => {
                let (mut i, mut o) = (s.stdin.take().unwrap(), s.stdout.take().unwrap());
                tokio::io::copy(&mut i, &mut o).await?;
                Ok(0)
            }
            Some("exit") => {
                if let Some(o) = s.stdout.as_mut() {
                    o.write_all(b"out\n").await?;
                }
                if let Some(e) = s.stderr.as_mut() {
                    e.write_all(b"err\n").await?;
                }
                Ok(cmd[1].parse().unwrap())
            }
            Some("sizes") => {
                assert!(s.tty);
                let mut rx = s.resize.take().expect("tty sessions get resizes");
                let mut o = s.stdout.take().unwrap();
                let n: usize = cmd[1].parse().unwrap();
                for _ in 0..n {
                    let size = rx.recv().await.expect("a size");
                    o.write_all(format!("{}x{}\n", size.width, size.height).as_bytes())
                        .await?;
                }
                Ok(0)
            }
            _ => Err(StreamError::Internal(format!("no such command {cmd:?}"))),
        }
    }

    async fn attach(&self, container_id: &str, mut s: Streams) -> Result<(), StreamError> {
        let mut o = s.stdout.take().unwrap();
        o.write_all(format!("attached to {container_id}\n").as_bytes())
            .await?;
        if let Some(mut i) = s.stdin.take() {
            tokio::io::copy(&mut i, &mut o).await?;
        }
        Ok(())
    }

    async fn port_forward(&self, pod: &str, port: u16) -> Result<TcpStream, StreamError> {
        match &self.netns {
            Some(ns) if pod == "pod-1" => NetnsPortForwarder::connect(ns, port).await,
            _ => Err(StreamError::NotFound(format!(
                "pod sandbox {pod} not found"
            ))),
        }
    }
}

async fn server_with(netns: Option<PathBuf>, config: Config) -> StreamingServer {
    StreamingServer::start(config, Arc::new(Fake { netns }))
        .await
        .unwrap()
}

async fn server() -> StreamingServer {
    server_with(None, Config::default()).await
}

fn exec_req(cmd: &[&str], stdin: bool, stdout: bool, stderr: bool, tty: bool) -> api::ExecRequest {
    api::ExecRequest {
        container_id: "c1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdin,
        stdout,
        stderr,
        tty,
    }
}

fn opts(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> RemoteCommandOptions {
    RemoteCommandOptions {
        stdin,
        stdout,
        stderr,
        tty,
    }
}

async fn read_all(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("stream ends")
        .unwrap();
    out
}

// ---------------------------------------------------------------- URLs and validation

#[tokio::test]
async fn requests_are_validated_as_upstream() {
    let srv = server().await;
    fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> tonic::Code {
        r.unwrap_err().code()
    }
    assert_eq!(
        code(srv.get_exec(&exec_req(&["x"], false, false, false, false))),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        code(srv.get_exec(&exec_req(&["x"], false, true, true, true))),
        tonic::Code::InvalidArgument
    );
    let mut no_container = exec_req(&["x"], false, true, false, false);
    no_container.container_id.clear();
    assert_eq!(
        code(srv.get_exec(&no_container)),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        code(srv.get_attach(&api::AttachRequest {
            container_id: "c1".into(),
            ..Default::default()
        })),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        code(srv.get_port_forward(&api::PortForwardRequest::default())),
        tonic::Code::InvalidArgument
    );
    let url = srv
        .get_exec(&exec_req(&["x"], false, true, false, false))
        .unwrap()
        .url;
    let prefix = format!("http://{}/exec/", srv.local_addr());
    assert!(url.starts_with(&prefix), "{url}");
    assert_eq!(url.len(), prefix.len() + 11);
}

#[tokio::test]
async fn unknown_used_and_expired_tokens_are_404() {
    let srv = server_with(
        None,
        Config {
            token_ttl: Duration::from_millis(200),
            ..Config::default()
        },
    )
    .await;
    let refused = |r: Result<client::Upgraded, ClientError>| match r {
        Err(ClientError::Refused { status, .. }) => status,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("upgraded"),
    };
    let base = format!("http://{}", srv.local_addr());
    assert_eq!(
        refused(client::connect(&format!("{base}/exec/nope"), &[STREAM_PROTOCOL_V4]).await),
        404
    );
    assert_eq!(
        refused(client::connect(&format!("{base}/other/x"), &[STREAM_PROTOCOL_V4]).await),
        404
    );

    // One use only, and only for the kind it was issued for.
    let url = srv
        .get_exec(&exec_req(&["exit", "0"], false, true, false, false))
        .unwrap()
        .url;
    let attach_url = url.replace("/exec/", "/attach/");
    assert_eq!(
        refused(client::connect(&attach_url, &[STREAM_PROTOCOL_V4]).await),
        404
    );
    assert_eq!(
        refused(client::connect(&url, &[STREAM_PROTOCOL_V4]).await),
        404,
        "consumed by the wrong-kind request"
    );
    let url = srv
        .get_exec(&exec_req(&["exit", "0"], false, true, false, false))
        .unwrap()
        .url;
    let mut rc =
        client::remote_command(&url, opts(false, true, false, false), &[STREAM_PROTOCOL_V4])
            .await
            .unwrap();
    assert_eq!(rc.exit_code().await.unwrap(), 0);
    assert_eq!(
        refused(client::connect(&url, &[STREAM_PROTOCOL_V4]).await),
        404
    );

    let url = srv
        .get_exec(&exec_req(&["exit", "0"], false, true, false, false))
        .unwrap()
        .url;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        refused(client::connect(&url, &[STREAM_PROTOCOL_V4]).await),
        404,
        "expired"
    );
}

#[tokio::test]
async fn spdy_negotiation_failures() {
    let srv = server().await;
    let url = || {
        srv.get_exec(&exec_req(&["exit", "0"], false, true, false, false))
            .unwrap()
            .url
    };
    match client::connect(&url(), &["v9.channel.k8s.io"]).await {
        Err(ClientError::Refused {
            status,
            accepted,
            body,
        }) => {
            assert_eq!(status, 403, "{body}");
            assert_eq!(accepted, SUPPORTED_STREAM_PROTOCOLS);
        }
        other => panic!("{:?}", other.err()),
    }
    match client::connect(&url(), &[]).await {
        Err(ClientError::Refused { status, body, .. }) => {
            assert_eq!(status, 400);
            assert!(
                body.contains("X-Stream-Protocol-Version is required"),
                "{body}"
            );
        }
        other => panic!("{:?}", other.err()),
    }
    // A plain GET without upgrade headers.
    let mut tcp = TcpStream::connect(srv.local_addr()).await.unwrap();
    let path = url()
        .split_once(&srv.local_addr().to_string())
        .unwrap()
        .1
        .to_owned();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let resp = read_all(&mut tcp).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("missing upgrade headers"), "{resp}");
}

// ---------------------------------------------------------------- SPDY exec/attach

#[tokio::test]
async fn spdy_exec_echoes_stdin() {
    let srv = server().await;
    let url = srv
        .get_exec(&exec_req(&["echo"], true, true, true, false))
        .unwrap()
        .url;
    let mut rc = client::remote_command(
        &url,
        opts(true, true, true, false),
        SUPPORTED_STREAM_PROTOCOLS,
    )
    .await
    .unwrap();
    assert_eq!(rc.protocol, STREAM_PROTOCOL_V4);
    let mut stdin = rc.stdin.take().unwrap();
    // Larger than any one frame and the inbound queue, to exercise back-pressure.
    let payload: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let writer = {
        let payload = payload.clone();
        tokio::spawn(async move {
            stdin.write_all(payload.as_bytes()).await.unwrap();
            stdin.shutdown().await.unwrap();
        })
    };
    let out = read_all(rc.stdout.as_mut().unwrap()).await;
    writer.await.unwrap();
    assert_eq!(out.len(), payload.len());
    assert_eq!(out, payload);
    assert_eq!(read_all(rc.stderr.as_mut().unwrap()).await, "");
    assert_eq!(rc.exit_code().await.unwrap(), 0);
    rc.close().await;
}

#[tokio::test]
async fn spdy_exec_reports_non_zero_exit_in_the_error_stream() {
    let srv = server().await;
    let url = srv
        .get_exec(&exec_req(&["exit", "3"], false, true, true, false))
        .unwrap()
        .url;
    let mut rc =
        client::remote_command(&url, opts(false, true, true, false), &[STREAM_PROTOCOL_V4])
            .await
            .unwrap();
    assert_eq!(read_all(rc.stdout.as_mut().unwrap()).await, "out\n");
    assert_eq!(read_all(rc.stderr.as_mut().unwrap()).await, "err\n");
    let raw = read_all(&mut rc.error).await;
    let status: Status = serde_json::from_str(&raw).unwrap();
    assert_eq!(status.status, "Failure");
    assert_eq!(status.reason, "NonZeroExitCode");
    assert_eq!(status.exit_code_cause(), Some(3), "{raw}");
}

#[tokio::test]
async fn spdy_older_protocols_report_failures_as_text() {
    let srv = server().await;
    for proto in [STREAM_PROTOCOL_V3, STREAM_PROTOCOL_V2, STREAM_PROTOCOL_V1] {
        let url = srv
            .get_exec(&exec_req(&["exit", "7"], false, true, false, false))
            .unwrap()
            .url;
        let mut rc = client::remote_command(&url, opts(false, true, false, false), &[proto])
            .await
            .unwrap();
        assert_eq!(rc.protocol, proto);
        assert_eq!(read_all(rc.stdout.as_mut().unwrap()).await, "out\n");
        match rc.exit_code().await {
            Err(ClientError::BadStatus(msg)) => assert!(msg.contains("exit code 7"), "{msg}"),
            other => panic!("{proto}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn spdy_tty_resizes_reach_the_runtime() {
    let srv = server().await;
    let url = srv
        .get_exec(&exec_req(&["sizes", "2"], true, true, false, true))
        .unwrap()
        .url;
    let mut rc = client::remote_command(&url, opts(true, true, false, true), &[STREAM_PROTOCOL_V4])
        .await
        .unwrap();
    assert!(rc.resize.is_some() && rc.stderr.is_none());
    rc.resize(80, 24).await.unwrap();
    rc.resize(132, 50).await.unwrap();
    assert_eq!(
        read_all(rc.stdout.as_mut().unwrap()).await,
        "80x24\n132x50\n"
    );
    assert_eq!(rc.exit_code().await.unwrap(), 0);
}

#[tokio::test]
async fn spdy_attach_and_runtime_errors() {
    let srv = server().await;
    let url = srv
        .get_attach(&api::AttachRequest {
            container_id: "c9".into(),
            stdin: true,
            stdout: true,
            ..Default::default()
        })
        .unwrap()
        .url;
    assert!(url.contains("/attach/"));
    let mut rc =
        client::remote_command(&url, opts(true, true, false, false), &[STREAM_PROTOCOL_V4])
            .await
            .unwrap();
    let mut stdin = rc.stdin.take().unwrap();
    stdin.write_all(b"typed\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    assert_eq!(
        read_all(rc.stdout.as_mut().unwrap()).await,
        "attached to c9\ntyped\n"
    );
    assert_eq!(rc.exit_code().await.unwrap(), 0);

    let mut req = exec_req(&["echo"], false, true, false, false);
    req.container_id = "missing".into();
    let url = srv.get_exec(&req).unwrap().url;
    let mut rc =
        client::remote_command(&url, opts(false, true, false, false), &[STREAM_PROTOCOL_V4])
            .await
            .unwrap();
    match rc.exit_code().await {
        Err(ClientError::BadStatus(msg)) => assert_eq!(msg, "container missing not found"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- WebSocket exec/attach

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn ws_connect(
    url: &str,
    protocols: &[&str],
) -> Result<(Ws, Option<String>), tokio_tungstenite::tungstenite::Error> {
    let url = url.replacen("http://", "ws://", 1);
    let mut req = url.as_str().into_client_request()?;
    if !protocols.is_empty() {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocols.join(", ").parse().unwrap(),
        );
    }
    let host = req.uri().authority().unwrap().to_string();
    let tcp = TcpStream::connect(host).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await?;
    let proto = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    Ok((ws, proto))
}

/// Collects (channel, payload) messages until the server closes.
async fn ws_drain(ws: &mut Ws) -> Vec<(u8, Vec<u8>)> {
    let mut got = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("server closes the socket");
        match msg {
            Some(Ok(Message::Binary(b))) => got.push((b[0], b[1..].to_vec())),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return got,
            Some(Ok(_)) => {}
        }
    }
}

fn channel(msgs: &[(u8, Vec<u8>)], ch: u8) -> String {
    msgs.iter()
        .filter(|(c, _)| *c == ch)
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .collect()
}

#[tokio::test]
async fn websocket_v5_exec_with_stdin_close() {
    let srv = server().await;
    let url = srv
        .get_exec(&exec_req(&["echo"], true, true, false, false))
        .unwrap()
        .url;
    let (mut ws, proto) = ws_connect(&url, &[WS_PROTOCOL_V5, WS_PROTOCOL_V4])
        .await
        .unwrap();
    assert_eq!(proto.as_deref(), Some(WS_PROTOCOL_V5));
    // The ready signal: an empty message on stdout.
    match ws.next().await.unwrap().unwrap() {
        Message::Binary(b) => assert_eq!(b, vec![CHANNEL_STDOUT]),
        m => panic!("{m:?}"),
    }
    ws.send(Message::Binary([&[CHANNEL_STDIN][..], b"hello "].concat()))
        .await
        .unwrap();
    ws.send(Message::Binary([&[CHANNEL_STDIN][..], b"world"].concat()))
        .await
        .unwrap();
    // v5: half-close stdin without closing the socket.
    ws.send(Message::Binary(vec![CHANNEL_CLOSE, CHANNEL_STDIN]))
        .await
        .unwrap();
    let msgs = ws_drain(&mut ws).await;
    assert_eq!(channel(&msgs, CHANNEL_STDOUT), "hello world");
    let status: Status = serde_json::from_str(&channel(&msgs, CHANNEL_ERROR)).unwrap();
    assert!(status.is_success());
}

#[tokio::test]
async fn websocket_v4_exit_code_and_base64() {
    let srv = server().await;
    let url = srv
        .get_exec(&exec_req(&["exit", "42"], false, true, true, false))
        .unwrap()
        .url;
    let (mut ws, proto) = ws_connect(&url, &[WS_PROTOCOL_V4]).await.unwrap();
    assert_eq!(proto.as_deref(), Some(WS_PROTOCOL_V4));
    let msgs = ws_drain(&mut ws).await;
    assert_eq!(channel(&msgs, CHANNEL_STDOUT), "out\n");
    assert_eq!(channel(&msgs, CHANNEL_STDERR), "err\n");
    let status: Status = serde_json::from_str(&channel(&msgs, CHANNEL_ERROR)).unwrap();
    assert_eq!(status.exit_code_cause(), Some(42));

    // base64: text frames, ASCII channel digit, base64 payload; v1 status is text.
    let url = srv
        .get_exec(&exec_req(&["exit", "5"], false, true, false, false))
        .unwrap()
        .url;
    let (mut ws, proto) = ws_connect(&url, &[WS_PROTOCOL_V1_BASE64]).await.unwrap();
    assert_eq!(proto.as_deref(), Some(WS_PROTOCOL_V1_BASE64));
    let mut texts = Vec::new();
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Text(t) => texts.push(t),
            Message::Close(_) => break,
            _ => {}
        }
    }
    use base64::Engine as _;
    let decoded: Vec<(char, String)> = texts
        .iter()
        .map(|t| {
            let (ch, b) = t.split_at(1);
            let d = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
            (ch.chars().next().unwrap(), String::from_utf8(d).unwrap())
        })
        .collect();
    assert_eq!(decoded[0], ('1', String::new()), "ready signal");
    assert!(decoded.contains(&('1', "out\n".into())), "{decoded:?}");
    assert!(
        decoded
            .iter()
            .any(|(c, m)| *c == '3' && m.contains("exit code 5")),
        "{decoded:?}"
    );
}

#[tokio::test]
async fn websocket_tty_resize_and_attach() {
    let srv = server().await;
    let url = srv
        .get_exec(&exec_req(&["sizes", "1"], true, true, false, true))
        .unwrap()
        .url;
    let (mut ws, _) = ws_connect(&url, &[WS_PROTOCOL_V4]).await.unwrap();
    ws.send(Message::Binary(
        [&[CHANNEL_RESIZE][..], br#"{"Width":100,"Height":40}"#].concat(),
    ))
    .await
    .unwrap();
    let msgs = ws_drain(&mut ws).await;
    assert_eq!(channel(&msgs, CHANNEL_STDOUT), "100x40\n");

    let url = srv
        .get_attach(&api::AttachRequest {
            container_id: "c2".into(),
            stdout: true,
            ..Default::default()
        })
        .unwrap()
        .url;
    let (mut ws, proto) = ws_connect(&url, &[]).await.unwrap();
    assert_eq!(proto, None, "no subprotocol requested, none chosen");
    let msgs = ws_drain(&mut ws).await;
    assert_eq!(channel(&msgs, CHANNEL_STDOUT), "attached to c2\n");
    assert_eq!(
        channel(&msgs, CHANNEL_ERROR),
        "",
        "v1 reports nothing on success"
    );
}

#[tokio::test]
async fn websocket_negotiation_failure_is_403() {
    let srv = server().await;
    let url = srv
        .get_exec(&exec_req(&["echo"], true, true, false, false))
        .unwrap()
        .url;
    match ws_connect(&url, &["v9.channel.k8s.io"]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

// ---------------------------------------------------------------- port-forward (root)

/// A uniquely named network namespace with `lo` up, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates a network namespace: run it as root"
        );
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "dh-stream-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ip = |args: &[&str]| {
            let st = Command::new("ip")
                .args(args)
                .status()
                .expect("ip(8) is installed");
            assert!(st.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// A TCP echo server listening on 127.0.0.1 inside the namespace; returns its port.
    fn echo_server(&self) -> u16 {
        let path = self.path();
        let listener = std::thread::spawn(move || {
            let f = std::fs::File::open(path).unwrap();
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            std::net::TcpListener::bind("127.0.0.1:0").unwrap()
        })
        .join()
        .unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = w.write_all(b"echo:").await;
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        port
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[tokio::test]
async fn spdy_port_forward_into_a_network_namespace() {
    let ns = Netns::new();
    let port = ns.echo_server();
    // The server really is only inside the namespace.
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    let srv = server_with(Some(ns.path()), Config::default()).await;
    let url = srv
        .get_port_forward(&api::PortForwardRequest {
            pod_sandbox_id: "pod-1".into(),
            port: vec![],
        })
        .unwrap()
        .url;
    let up = client::connect(&url, &[PORT_FORWARD_PROTOCOL_V1])
        .await
        .unwrap();
    assert_eq!(up.protocol, PORT_FORWARD_PROTOCOL_V1);
    // Two forwarded connections over one SPDY connection, concurrently.
    let mut handles = Vec::new();
    for id in 0..2u32 {
        let conn = up.connection.clone();
        handles.push(tokio::spawn(async move {
            let (mut data, mut error) =
                client::port_forward_streams(&conn, port, id).await.unwrap();
            data.write_all(format!("hello {id}").as_bytes())
                .await
                .unwrap();
            data.shutdown().await.unwrap();
            assert_eq!(read_all(&mut data).await, format!("echo:hello {id}"));
            assert_eq!(read_all(&mut error).await, "");
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    // A port nobody listens on: the failure arrives on the error stream.
    let (mut data, mut error) = client::port_forward_streams(&up.connection, 1, 9)
        .await
        .unwrap();
    let msg = read_all(&mut error).await;
    assert!(
        msg.contains("error forwarding port 1 to pod pod-1"),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    assert_eq!(read_all(&mut data).await, "");
    up.connection.close(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn websocket_port_forward_into_a_network_namespace() {
    let ns = Netns::new();
    let port = ns.echo_server();
    let srv = server_with(Some(ns.path()), Config::default()).await;
    let url = srv
        .get_port_forward(&api::PortForwardRequest {
            pod_sandbox_id: "pod-1".into(),
            port: vec![i32::from(port)],
        })
        .unwrap()
        .url;
    let (mut ws, proto) = ws_connect(&url, &[WS_PROTOCOL_V4]).await.unwrap();
    assert_eq!(proto.as_deref(), Some(WS_PROTOCOL_V4));
    ws.send(Message::Binary([&[0u8][..], b"ping"].concat()))
        .await
        .unwrap();
    let mut data = Vec::new();
    let mut prefixes = Vec::new();
    while data.len() < b"echo:ping".len() {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) if b.len() == 3 && prefixes.len() < 2 => {
                prefixes.push((b[0], u16::from_le_bytes([b[1], b[2]])))
            }
            Message::Binary(b) if b[0] == 0 => data.extend_from_slice(&b[1..]),
            m => panic!("unexpected {m:?}"),
        }
    }
    assert_eq!(
        prefixes,
        vec![(0, port), (1, port)],
        "each channel starts with the port"
    );
    assert_eq!(data, b"echo:ping");
    ws.close(None).await.unwrap();

    // Unknown sandbox: the error channel says so.
    let url = srv
        .get_port_forward(&api::PortForwardRequest {
            pod_sandbox_id: "pod-2".into(),
            port: vec![80],
        })
        .unwrap()
        .url;
    let (mut ws, _) = ws_connect(&url, &[WS_PROTOCOL_V4]).await.unwrap();
    let msgs = ws_drain(&mut ws).await;
    let err = channel(&msgs, 1);
    assert!(err.contains("pod sandbox pod-2 not found"), "{err:?}");
}

// ---------------------------------------------------------------- interop with Go (opt-in)

/// Drives the server with moby/spdystream, the Go SPDY library kubectl and the kubelet use.
/// Needs `go` and the library's source in GOPATH form:
/// `apt-get install golang-go golang-github-docker-spdystream-dev`.
#[tokio::test]
#[ignore = "needs Go and golang-github-docker-spdystream-dev"]
async fn go_spdystream_client_interop() {
    let gopath = tempfile::tempdir().unwrap();
    let pkg = gopath.path().join("src/spdyclient");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/streaming/spdy/testdata/spdystream_client.go"
        ),
        pkg.join("main.go"),
    )
    .unwrap();
    let bin = gopath.path().join("spdyclient");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&pkg)
        .env("GO111MODULE", "off")
        .env(
            "GOPATH",
            format!("{}:/usr/share/gocode", gopath.path().display()),
        )
        .env("GOCACHE", gopath.path().join("cache"))
        .status()
        .expect("go is installed");
    assert!(built.success());

    let ns = Netns::new();
    let port = ns.echo_server();
    let srv = server_with(Some(ns.path()), Config::default()).await;
    let run = |args: Vec<String>| {
        let bin = bin.clone();
        async move {
            let out = tokio::process::Command::new(bin)
                .args(args)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };

    let url = srv
        .get_exec(&exec_req(&["echo"], true, true, true, false))
        .unwrap()
        .url;
    let out = run(vec!["exec".into(), url, "hello from go".into()]).await;
    assert!(out.contains("status 101 v4.channel.k8s.io"), "{out}");
    assert!(out.contains(r#"upgrade "Upgrade" "SPDY/3.1""#), "{out}");
    assert!(out.contains("ping ok true"), "{out}");
    assert!(out.contains(r#"stdout "hello from go" <nil>"#), "{out}");
    assert!(
        out.contains(r#"error {"metadata":{},"status":"Success"} <nil>"#),
        "{out}"
    );

    let url = srv
        .get_port_forward(&api::PortForwardRequest {
            pod_sandbox_id: "pod-1".into(),
            port: vec![],
        })
        .unwrap()
        .url;
    let out = run(vec!["pf".into(), url, port.to_string(), "payload".into()]).await;
    assert_eq!(
        out.matches(r#"data "echo:payload" <nil>"#).count(),
        2,
        "{out}"
    );
}

/// A minimal API server for kubectl: legacy discovery, a running pod `p` with container `c1`,
/// and exec/portforward requests spliced onto fresh streaming URLs, as the API server's proxy
/// and the kubelet do.
async fn fake_api_server(srv: Arc<StreamingServer>) -> std::net::SocketAddr {
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = api.accept().await.unwrap();
            let srv = srv.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if c.read(&mut b).await.unwrap() == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8(head).unwrap();
                let target = head.split(' ').nth(1).unwrap().to_owned();
                if !target.contains("/exec") && !target.contains("/portforward") {
                    // Legacy discovery, then the pod itself.
                    let pod = match target.split('?').next().unwrap() {
                        "/api" => {
                            r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}"#
                        }
                        "/apis" => r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#,
                        "/api/v1" => {
                            r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"]},{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]}]}"#
                        }
                        _ => {
                            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"default"},"spec":{"containers":[{"name":"c1","image":"x"}]},"status":{"phase":"Running"}}"#
                        }
                    };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{pod}",
                        pod.len()
                    );
                    c.write_all(resp.as_bytes()).await.unwrap();
                    return;
                }
                let query = target.split_once('?').map(|q| q.1).unwrap_or_default();
                let has = |k: &str| {
                    query
                        .split('&')
                        .any(|p| p == format!("{k}=true") || p == format!("{k}=1"))
                };
                let cmd: Vec<&str> = query
                    .split('&')
                    .filter_map(|p| p.strip_prefix("command="))
                    .collect();
                let url = if target.contains("/portforward") {
                    let req = api::PortForwardRequest {
                        pod_sandbox_id: "pod-1".into(),
                        port: vec![],
                    };
                    srv.get_port_forward(&req).unwrap().url
                } else {
                    let req =
                        exec_req(&cmd, has("stdin"), has("stdout"), has("stderr"), has("tty"));
                    srv.get_exec(&req).unwrap().url
                };
                let path = url
                    .split_once(&srv.local_addr().to_string())
                    .unwrap()
                    .1
                    .to_owned();
                let head = head.replacen(&target, &path, 1);
                let mut up = TcpStream::connect(srv.local_addr()).await.unwrap();
                up.write_all(head.as_bytes()).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
            });
        }
    });
    api_addr
}

/// Real `kubectl exec` through a minimal fake API server that answers the pod GET and splices
/// the exec upgrade onto a fresh streaming URL, as the API server and kubelet proxy do.
/// kubectl ≥ 1.30 speaks WebSocket v5 first; `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false` makes it
/// use SPDY. Needs `kubectl` on PATH.
#[tokio::test]
#[ignore = "needs kubectl"]
async fn kubectl_exec_interop() {
    let srv = Arc::new(server().await);
    let api_addr = fake_api_server(srv).await;
    for websockets in ["true", "false"] {
        for (cmd, want_code) in [(vec!["echo"], 0), (vec!["exit", "4"], 4)] {
            let mut child = tokio::process::Command::new("kubectl")
                .args([
                    "--server",
                    &format!("http://{api_addr}"),
                    "exec",
                    "-i",
                    "p",
                    "-c",
                    "c1",
                    "--",
                ])
                .args(&cmd)
                .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
                .env("KUBECONFIG", "/dev/null")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"through kubectl\n").await.unwrap();
            drop(stdin);
            let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
                .await
                .expect("kubectl finishes")
                .unwrap();
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            eprintln!(
                "websockets={websockets} {cmd:?}: {:?}\n{stdout}\n{stderr}",
                out.status
            );
            assert_eq!(out.status.code(), Some(want_code), "{stderr}");
            if want_code == 0 {
                assert_eq!(stdout, "through kubectl\n");
            } else {
                assert_eq!(stdout, "out\n");
                assert!(stderr.starts_with("err\n"), "{stderr}");
                assert!(
                    stderr.contains("command terminated with exit code 4"),
                    "{stderr}"
                );
            }
        }
    }
}

/// Real `kubectl port-forward` (SPDY) into a network namespace. Needs `kubectl` and root.
#[tokio::test]
#[ignore = "needs kubectl"]
async fn kubectl_port_forward_interop() {
    let ns = Netns::new();
    let port = ns.echo_server();
    let srv = Arc::new(server_with(Some(ns.path()), Config::default()).await);
    let api_addr = fake_api_server(srv).await;
    let mut child = tokio::process::Command::new("kubectl")
        .args([
            "--server",
            &format!("http://{api_addr}"),
            "port-forward",
            "p",
        ])
        .arg(format!(":{port}"))
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
        .env("KUBECONFIG", "/dev/null")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    use tokio::io::AsyncBufReadExt;
    tokio::time::timeout(Duration::from_secs(20), lines.read_line(&mut line))
        .await
        .expect("kubectl starts forwarding")
        .unwrap();
    // "Forwarding from 127.0.0.1:41233 -> 8080"
    let local: u16 = line
        .split_once("127.0.0.1:")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    for i in 0..3 {
        let mut c = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
        c.write_all(format!("via kubectl {i}").as_bytes())
            .await
            .unwrap();
        c.shutdown().await.unwrap();
        assert_eq!(read_all(&mut c).await, format!("echo:via kubectl {i}"));
    }
    child.kill().await.unwrap();
}
