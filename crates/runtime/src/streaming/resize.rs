//! Decoding the resize stream: a sequence of JSON objects `{"Width":80,"Height":24}`.
//!
//! The kubelet decodes it with Go's `encoding/json`, which matches field names
//! case-insensitively and treats missing fields as zero; the aliases below accept what it does.

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::TerminalSize;

#[derive(Deserialize)]
struct WireSize {
    #[serde(rename = "Width", alias = "width", alias = "WIDTH", default)]
    width: u16,
    #[serde(rename = "Height", alias = "height", alias = "HEIGHT", default)]
    height: u16,
}

/// Sizes larger than this without a complete JSON value mean a broken client.
const MAX_PENDING: usize = 64 * 1024;

/// Forwards every size read from `stream` to `tx` until the stream ends, the JSON breaks, or
/// the receiver is dropped.
pub(crate) async fn forward_resizes(
    mut stream: impl AsyncRead + Unpin,
    tx: mpsc::Sender<TerminalSize>,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        let mut values = serde_json::Deserializer::from_slice(&pending).into_iter::<WireSize>();
        let mut consumed = 0;
        loop {
            match values.next() {
                Some(Ok(size)) => {
                    consumed = values.byte_offset();
                    let size = TerminalSize {
                        width: size.width,
                        height: size.height,
                    };
                    if tx.send(size).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "malformed resize message; ignoring further resizes");
                    return;
                }
                None => {
                    consumed = pending.len();
                    break;
                }
            }
        }
        pending.drain(..consumed);
        if pending.len() > MAX_PENDING {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn decodes_split_and_concatenated_values() {
        let (mut w, r) = tokio::io::duplex(64);
        let (tx, mut rx) = mpsc::channel(8);
        let task = tokio::spawn(forward_resizes(r, tx));
        use tokio::io::AsyncWriteExt;
        w.write_all(br#"{"Width":80,"Height":24}{"width":1"#)
            .await
            .unwrap();
        w.write_all(br#"00,"height":50}"#).await.unwrap();
        w.write_all(b" {\"Height\":7}").await.unwrap();
        drop(w);
        task.await.unwrap();
        let mut got = Vec::new();
        while let Some(s) = rx.recv().await {
            got.push((s.width, s.height));
        }
        assert_eq!(got, vec![(80, 24), (100, 50), (0, 7)]);
    }
}
