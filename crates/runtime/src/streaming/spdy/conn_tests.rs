//! Connection behaviour over an in-memory pipe: both ends are this implementation (interop
//! with Go's spdystream is covered by the opt-in test in `tests/streaming.rs`).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::super::frame;
use super::*;

fn pair(idle: Option<Duration>) -> ((Connection, Incoming), (Connection, Incoming)) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = Connection::new(a, Role::Client, ConnectionConfig::default());
    let server = Connection::new(b, Role::Server, ConnectionConfig { idle_timeout: idle });
    (client, server)
}

async fn read_to_end(s: &mut Stream) -> Vec<u8> {
    let mut v = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut v))
        .await
        .expect("stream ends")
        .unwrap();
    v
}

#[tokio::test]
async fn streams_carry_data_and_half_close_independently() {
    let ((client, _), (_server, mut incoming)) = pair(None);
    let open = tokio::spawn(async move {
        client
            .open_stream(Headers::new().with("streamType", "stdin"))
            .await
            .unwrap()
    });
    let inc = incoming.next().await.unwrap();
    assert_eq!(inc.id(), 1, "client streams are odd, from 1");
    assert_eq!(inc.headers().get("STREAMTYPE"), Some("stdin"));
    let mut srv = inc.accept().await.unwrap();
    let mut cli = open.await.unwrap();

    cli.write_all(b"ping").await.unwrap();
    cli.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut srv).await, b"ping");
    // The server's half is still open after the client's FIN.
    srv.write_all(b"pong").await.unwrap();
    srv.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut cli).await, b"pong");
    assert!(
        srv.write_all(b"late").await.is_err(),
        "writes after shutdown fail"
    );
}

#[tokio::test]
async fn rejected_and_reset_streams() {
    let ((client, _), (_server, mut incoming)) = pair(None);
    let c2 = client.clone();
    let open = tokio::spawn(async move { c2.open_stream(Headers::new()).await });
    incoming
        .next()
        .await
        .unwrap()
        .reject(frame::RST_REFUSED_STREAM)
        .await;
    match open.await.unwrap() {
        Err(ConnectionError::Reset(1, status)) => assert_eq!(status, frame::RST_REFUSED_STREAM),
        other => panic!("{other:?}"),
    }

    let c2 = client.clone();
    let open = tokio::spawn(async move { c2.open_stream(Headers::new()).await.unwrap() });
    let srv = incoming.next().await.unwrap().accept().await.unwrap();
    let mut cli = open.await.unwrap();
    srv.reset().await;
    assert_eq!(
        read_to_end(&mut cli).await,
        b"",
        "a reset stream reads as ended"
    );
    // The reset reaches the client's reader before this write is attempted.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = cli.write_all(b"x").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn close_fins_open_streams_and_the_peer_sees_the_end() {
    let ((client, mut client_incoming), (server, mut incoming)) = pair(None);
    let c2 = client.clone();
    let open = tokio::spawn(async move { c2.open_stream(Headers::new()).await.unwrap() });
    let mut srv = incoming.next().await.unwrap().accept().await.unwrap();
    let mut cli = open.await.unwrap();
    srv.write_all(b"last words").await.unwrap();
    let closing = tokio::spawn(async move { server.close(Duration::from_secs(5)).await });
    assert_eq!(read_to_end(&mut cli).await, b"last words");
    // GOAWAY ends the client's incoming streams; the server waits for the client to hang up.
    assert!(client_incoming.next().await.is_none());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !closing.is_finished(),
        "the server lets the client close first"
    );
    client.close(Duration::from_secs(5)).await;
    tokio::time::timeout(Duration::from_secs(5), closing)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let ((client, _), (server, _incoming)) = pair(Some(Duration::from_millis(100)));
    tokio::time::timeout(Duration::from_secs(5), server.closed())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), client.closed())
        .await
        .unwrap();
}

#[tokio::test]
async fn streams_of_the_wrong_parity_are_refused() {
    // A "client" that opens even-numbered streams, as only a server may.
    let (a, b) = tokio::io::duplex(4096);
    let (fake_client, _) = Connection::new(a, Role::Server, ConnectionConfig::default());
    let (server, mut incoming) = Connection::new(b, Role::Server, ConnectionConfig::default());
    let open = fake_client.open_stream(Headers::new());
    match tokio::time::timeout(Duration::from_secs(5), open)
        .await
        .unwrap()
    {
        Err(ConnectionError::Reset(2, status)) => assert_eq!(status, frame::RST_PROTOCOL_ERROR),
        other => panic!("{other:?}"),
    }
    server.abort();
    assert!(incoming.next().await.is_none());
}
