//! Container logs in the CRI format the kubelet reads (`kubectl logs`):
//! `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>\n`.
//!
//! Each complete line is written with tag `F`. A line longer than [`MAX_LINE`] is cut into
//! `P` (partial) records followed by the `F` record that ends it, as containerd does, so a
//! process printing without newlines cannot make the shim buffer without bound. Output still
//! pending when a stream ends is written as a `P` record, as containerd does: the line never
//! ended (nothing is lost; readers print partial records as they come).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};

/// containerd's default `max_container_log_line_size`.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// One container's log file and the unfinished line of each stream.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    pending: [Vec<u8>; 2],
    max_line: usize,
}

impl LogWriter {
    /// Open (create, append) the log file; its directory is created if missing.
    pub fn open(path: &Path) -> io::Result<LogWriter> {
        let mut w = LogWriter {
            path: path.to_owned(),
            file: None,
            pending: [Vec::new(), Vec::new()],
            max_line: MAX_LINE,
        };
        w.reopen()?;
        Ok(w)
    }

    #[cfg(test)]
    fn with_max_line(mut self, n: usize) -> Self {
        self.max_line = n;
        self
    }

    /// Close the file and open `path` again: after the kubelet renamed it for rotation, new
    /// output goes to a fresh file under the original name.
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        self.file = None;
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        Ok(())
    }

    /// Add output read from `stream`: complete lines are written at once.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) {
        let ts = timestamp();
        let mut out = Vec::new();
        while !data.is_empty() {
            let pending = &mut self.pending[stream.index()];
            match data.iter().position(|&b| b == b'\n') {
                Some(nl) if pending.len() + nl <= self.max_line => {
                    pending.extend_from_slice(&data[..nl]);
                    record(&mut out, &ts, stream, 'F', pending);
                    pending.clear();
                    data = &data[nl + 1..];
                }
                _ => {
                    // No newline within reach: fill up to the limit and cut a partial record.
                    let room = self.max_line - pending.len();
                    let take = room.min(data.len());
                    pending.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if pending.len() >= self.max_line {
                        record(&mut out, &ts, stream, 'P', pending);
                        pending.clear();
                    }
                }
            }
        }
        self.emit(&out);
    }

    /// The stream ended: write what is left of its unterminated last line (as `P`).
    pub fn finish(&mut self, stream: Stream) {
        let pending = std::mem::take(&mut self.pending[stream.index()]);
        if pending.is_empty() {
            return;
        }
        let mut out = Vec::new();
        record(&mut out, &timestamp(), stream, 'P', &pending);
        self.emit(&out);
    }

    fn emit(&mut self, out: &[u8]) {
        if out.is_empty() {
            return;
        }
        if let Some(f) = self.file.as_mut() {
            // A full disk must not stop the container: drop the output and say so.
            if let Err(e) = f.write_all(out) {
                crate::log!(
                    "WARN",
                    "cannot write container log {}: {e}",
                    self.path.display()
                );
            }
        }
    }
}

fn timestamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn record(out: &mut Vec<u8>, ts: &str, stream: Stream, tag: char, content: &[u8]) {
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.name().as_bytes());
    out.push(b' ');
    out.push(tag as u8);
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let ts = it.next().unwrap();
                chrono::DateTime::parse_from_rfc3339(ts).expect("RFC3339 timestamp");
                (
                    it.next().unwrap().to_string(),
                    it.next().unwrap().to_string(),
                    it.next().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn t(s: &str, tag: &str, c: &str) -> (String, String, String) {
        (s.into(), tag.into(), c.into())
    }

    #[test]
    fn full_partial_and_trailing_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let mut w = LogWriter::open(&path).unwrap().with_max_line(8);
        w.write(Stream::Stdout, b"one\ntw");
        w.write(Stream::Stderr, b"err\n");
        w.write(Stream::Stdout, b"o\n\n0123456789abc");
        w.write(Stream::Stdout, b"d\nend");
        w.finish(Stream::Stdout);
        w.finish(Stream::Stderr);
        assert_eq!(
            lines(&path),
            vec![
                t("stdout", "F", "one"),
                t("stderr", "F", "err"),
                t("stdout", "F", "two"),
                t("stdout", "F", ""),
                t("stdout", "P", "01234567"),
                t("stdout", "F", "89abcd"),
                t("stdout", "P", "end"),
            ]
        );
    }

    #[test]
    fn reopen_after_rotation_writes_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"before\n");
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
        w.reopen().unwrap();
        w.write(Stream::Stdout, b"after\n");
        assert_eq!(lines(&path), vec![t("stdout", "F", "after")]);
        assert_eq!(
            lines(&dir.path().join("0.log.1")),
            vec![t("stdout", "F", "before")]
        );
    }
}
