//! SPDY/3 frames: the wire layout, and the header-block compression that is the only stateful
//! part of the framing.
//!
//! Every name/value header block on a connection is one continuous zlib stream per direction,
//! primed with the SPDY dictionary and sync-flushed at the end of each block; so a
//! [`FrameEncoder`] and a [`FrameDecoder`] live as long as the connection, and a block cannot be
//! decoded without every block before it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::dictionary::DICTIONARY;

pub const VERSION: u16 = 3;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS: the sender's half of the stream is done.
pub const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM: the receiver must not send on this stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_INVALID_STREAM: u32 = 2;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;
pub const RST_INTERNAL_ERROR: u32 = 6;

/// Payload lengths are 24-bit.
pub const MAX_FRAME_LEN: usize = (1 << 24) - 1;
/// A decompressed header block larger than this is refused (a zlib bomb, not a real client).
const MAX_HEADER_BLOCK: usize = 1 << 20;
const STREAM_ID_MASK: u32 = 0x7fff_ffff;

/// Name/value headers of a stream. Names are stored lowercase (SPDY requires it on the wire);
/// lookups ignore case, so `streamType` finds `streamtype`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    pub fn add(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.0.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.add(name, value);
        self
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        slot: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("unsupported SPDY version {0} (only SPDY/3 is spoken)")]
    Version(u16),
    #[error("malformed SPDY {kind} frame: {why}")]
    Malformed { kind: &'static str, why: String },
    #[error("SPDY frame of {0} bytes exceeds the 24-bit length")]
    TooLarge(usize),
    #[error("SPDY header compression failed: {0}")]
    Compression(String),
}

fn malformed(kind: &'static str, why: impl Into<String>) -> FrameError {
    FrameError::Malformed {
        kind,
        why: why.into(),
    }
}

/// Serialises frames; owns the outgoing header-compression context.
pub struct FrameEncoder {
    deflate: Compress,
}

impl Default for FrameEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameEncoder {
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::best(), true);
        deflate
            .set_dictionary(DICTIONARY)
            .expect("a fresh deflate stream accepts a dictionary");
        FrameEncoder { deflate }
    }

    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), FrameError> {
        match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_FRAME_LEN {
                    return Err(FrameError::TooLarge(data.len()));
                }
                out.put_u32(stream_id & STREAM_ID_MASK);
                out.put_u32((u32::from(*flags) << 24) | data.len() as u32);
                out.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                flags,
                headers,
            } => {
                let block = self.compress_headers(headers)?;
                let mut body = BytesMut::with_capacity(10 + block.len());
                body.put_u32(stream_id & STREAM_ID_MASK);
                body.put_u32(associated_to & STREAM_ID_MASK);
                body.put_u8((priority & 0x07) << 5);
                body.put_u8(*slot);
                body.put_slice(&block);
                control(out, TYPE_SYN_STREAM, *flags, &body)?;
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.compress_headers(headers)?;
                let mut body = BytesMut::with_capacity(4 + block.len());
                body.put_u32(stream_id & STREAM_ID_MASK);
                body.put_slice(&block);
                control(out, TYPE_SYN_REPLY, *flags, &body)?;
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.compress_headers(headers)?;
                let mut body = BytesMut::with_capacity(4 + block.len());
                body.put_u32(stream_id & STREAM_ID_MASK);
                body.put_slice(&block);
                control(out, TYPE_HEADERS, *flags, &body)?;
            }
            Frame::RstStream { stream_id, status } => {
                let mut body = [0u8; 8];
                body[..4].copy_from_slice(&(stream_id & STREAM_ID_MASK).to_be_bytes());
                body[4..].copy_from_slice(&status.to_be_bytes());
                control(out, TYPE_RST_STREAM, 0, &body)?;
            }
            Frame::Settings { flags, entries } => {
                let mut body = BytesMut::with_capacity(4 + 8 * entries.len());
                body.put_u32(entries.len() as u32);
                for e in entries {
                    body.put_u32((u32::from(e.flags) << 24) | (e.id & 0x00ff_ffff));
                    body.put_u32(e.value);
                }
                control(out, TYPE_SETTINGS, *flags, &body)?;
            }
            Frame::Ping { id } => control(out, TYPE_PING, 0, &id.to_be_bytes())?,
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                let mut body = [0u8; 8];
                body[..4].copy_from_slice(&(last_good_stream_id & STREAM_ID_MASK).to_be_bytes());
                body[4..].copy_from_slice(&status.to_be_bytes());
                control(out, TYPE_GOAWAY, 0, &body)?;
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut body = [0u8; 8];
                body[..4].copy_from_slice(&(stream_id & STREAM_ID_MASK).to_be_bytes());
                body[4..].copy_from_slice(&(delta & STREAM_ID_MASK).to_be_bytes());
                control(out, TYPE_WINDOW_UPDATE, 0, &body)?;
            }
        }
        Ok(())
    }

    fn compress_headers(&mut self, headers: &Headers) -> Result<Vec<u8>, FrameError> {
        // Several values of one name travel as one entry, NUL-separated, in first-seen order.
        let mut grouped: Vec<(&str, Vec<&str>)> = Vec::new();
        for (n, v) in headers.iter() {
            match grouped.iter_mut().find(|(g, _)| *g == n) {
                Some((_, vs)) => vs.push(v),
                None => grouped.push((n, vec![v])),
            }
        }
        let mut raw = Vec::new();
        raw.put_u32(grouped.len() as u32);
        for (name, values) in grouped {
            let value = values.join("\0");
            raw.put_u32(name.len() as u32);
            raw.put_slice(name.as_bytes());
            raw.put_u32(value.len() as u32);
            raw.put_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(raw.len().max(256));
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| FrameError::Compression(e.to_string()))?;
            consumed += (self.deflate.total_in() - before) as usize;
            // A sync flush is complete once deflate stops with output space to spare.
            if consumed == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, body: &[u8]) -> Result<(), FrameError> {
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(body.len()));
    }
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32((u32::from(flags) << 24) | body.len() as u32);
    out.put_slice(body);
    Ok(())
}

/// Parses frames from a byte buffer; owns the incoming header-decompression context.
pub struct FrameDecoder {
    inflate: Decompress,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    pub fn new() -> Self {
        FrameDecoder {
            inflate: Decompress::new(true),
        }
    }

    /// Takes one complete frame off the front of `buf`, or `None` if more bytes are needed.
    /// Unknown control frame types are skipped, as the spec requires.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            if buf.len() < 8 {
                return Ok(None);
            }
            let len = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
            if buf.len() < 8 + len {
                buf.reserve(8 + len - buf.len());
                return Ok(None);
            }
            let mut frame = buf.split_to(8 + len).freeze();
            let word = frame.get_u32();
            let flags_len = frame.get_u32();
            let flags = (flags_len >> 24) as u8;
            if word & 0x8000_0000 == 0 {
                return Ok(Some(Frame::Data {
                    stream_id: word & STREAM_ID_MASK,
                    flags,
                    data: frame,
                }));
            }
            let version = ((word >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(FrameError::Version(version));
            }
            let kind = (word & 0xffff) as u16;
            if let Some(f) = self.control(kind, flags, frame)? {
                return Ok(Some(f));
            }
        }
    }

    fn control(
        &mut self,
        kind: u16,
        flags: u8,
        mut body: Bytes,
    ) -> Result<Option<Frame>, FrameError> {
        let need = |body: &Bytes, n: usize, what: &'static str| {
            if body.len() < n {
                Err(malformed(what, format!("{} bytes, need {n}", body.len())))
            } else {
                Ok(())
            }
        };
        Ok(Some(match kind {
            TYPE_SYN_STREAM => {
                need(&body, 10, "SYN_STREAM")?;
                let stream_id = body.get_u32() & STREAM_ID_MASK;
                let associated_to = body.get_u32() & STREAM_ID_MASK;
                let priority = body.get_u8() >> 5;
                let slot = body.get_u8();
                let headers = self.decompress_headers(&body, "SYN_STREAM")?;
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    slot,
                    flags,
                    headers,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                let what = if kind == TYPE_SYN_REPLY {
                    "SYN_REPLY"
                } else {
                    "HEADERS"
                };
                need(&body, 4, what)?;
                let stream_id = body.get_u32() & STREAM_ID_MASK;
                let headers = self.decompress_headers(&body, what)?;
                if kind == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            TYPE_RST_STREAM => {
                need(&body, 8, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id: body.get_u32() & STREAM_ID_MASK,
                    status: body.get_u32(),
                }
            }
            TYPE_SETTINGS => {
                need(&body, 4, "SETTINGS")?;
                let n = body.get_u32() as usize;
                need(&body, n.saturating_mul(8), "SETTINGS")?;
                let entries = (0..n)
                    .map(|_| {
                        let head = body.get_u32();
                        Setting {
                            flags: (head >> 24) as u8,
                            id: head & 0x00ff_ffff,
                            value: body.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            TYPE_PING => {
                need(&body, 4, "PING")?;
                Frame::Ping { id: body.get_u32() }
            }
            TYPE_GOAWAY => {
                need(&body, 8, "GOAWAY")?;
                Frame::GoAway {
                    last_good_stream_id: body.get_u32() & STREAM_ID_MASK,
                    status: body.get_u32(),
                }
            }
            TYPE_WINDOW_UPDATE => {
                need(&body, 8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate {
                    stream_id: body.get_u32() & STREAM_ID_MASK,
                    delta: body.get_u32() & STREAM_ID_MASK,
                }
            }
            _ => return Ok(None),
        }))
    }

    fn decompress_headers(
        &mut self,
        input: &[u8],
        what: &'static str,
    ) -> Result<Headers, FrameError> {
        let raw = self.inflate_block(input)?;
        parse_header_block(&raw).map_err(|why| malformed(what, why))
    }

    fn inflate_block(&mut self, input: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut consumed = 0usize;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(FrameError::Compression(format!(
                        "header block larger than {MAX_HEADER_BLOCK} bytes"
                    )));
                }
                out.reserve(out.len());
            }
            let (in_before, out_before) = (self.inflate.total_in(), out.len());
            match self
                .inflate
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                // The zlib header names a preset dictionary: SPDY's. Priming happens once, on
                // the first block of the connection.
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| FrameError::Compression(e.to_string()))?;
                }
                Err(e) => return Err(FrameError::Compression(e.to_string())),
            }
            let used = (self.inflate.total_in() - in_before) as usize;
            consumed += used;
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if used == 0 && out.len() == out_before && out.len() < out.capacity() {
                return Err(FrameError::Compression(
                    "header block does not decompress".into(),
                ));
            }
        }
    }
}

fn parse_header_block(mut raw: &[u8]) -> Result<Headers, String> {
    fn take_u32(raw: &mut &[u8]) -> Result<usize, String> {
        if raw.len() < 4 {
            return Err("truncated header block".into());
        }
        Ok(raw.get_u32() as usize)
    }
    fn take_str(raw: &mut &[u8]) -> Result<String, String> {
        let n = take_u32(raw)?;
        if raw.len() < n {
            return Err("truncated header block".into());
        }
        let s =
            String::from_utf8(raw[..n].to_vec()).map_err(|_| "header is not UTF-8".to_string())?;
        raw.advance(n);
        Ok(s)
    }
    let count = take_u32(&mut raw)?;
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = take_str(&mut raw)?;
        if name.is_empty() {
            return Err("empty header name".into());
        }
        let value = take_str(&mut raw)?;
        for v in value.split('\0') {
            headers.add(&name, v);
        }
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frames: &[Frame]) {
        let mut enc = FrameEncoder::new();
        let mut dec = FrameDecoder::new();
        let mut wire = BytesMut::new();
        for f in frames {
            enc.encode(f, &mut wire).unwrap();
        }
        // Feed the bytes in small pieces: the decoder must wait for whole frames.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(7) {
            buf.extend_from_slice(piece);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got, frames);
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.add(n, *v);
        }
        h
    }

    #[test]
    fn every_frame_type_round_trips() {
        round_trip(&[
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                slot: 0,
                flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
                headers: hdrs(&[("streamtype", "error")]),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: Headers::new(),
            },
            Frame::Headers {
                stream_id: 1,
                flags: FLAG_FIN,
                headers: hdrs(&[("x", "y")]),
            },
            Frame::RstStream {
                stream_id: 7,
                status: RST_CANCEL,
            },
            Frame::Settings {
                flags: 1,
                entries: vec![
                    Setting {
                        flags: 0,
                        id: 7,
                        value: 65536,
                    },
                    Setting {
                        flags: 1,
                        id: 4,
                        value: 100,
                    },
                ],
            },
            Frame::Ping { id: 0xdead_beef },
            Frame::GoAway {
                last_good_stream_id: 5,
                status: 0,
            },
            Frame::WindowUpdate {
                stream_id: 3,
                delta: 65536,
            },
            Frame::Data {
                stream_id: 3,
                flags: 0,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::new(),
            },
        ]);
    }

    #[test]
    fn header_compression_context_spans_frames() {
        // Repeated header blocks must decode only through the shared context: the later blocks
        // refer back to the earlier ones and come out much smaller.
        let frames: Vec<Frame> = (0..6u32)
            .map(|i| Frame::SynStream {
                stream_id: 2 * i + 1,
                associated_to: 0,
                priority: 0,
                slot: 0,
                flags: 0,
                headers: hdrs(&[
                    ("streamtype", "data"),
                    ("port", "8080"),
                    ("requestid", &i.to_string()),
                    ("multi", "a"),
                    ("multi", "b"),
                ]),
            })
            .collect();
        round_trip(&frames);

        let mut enc = FrameEncoder::new();
        let mut sizes = Vec::new();
        for f in &frames {
            let mut wire = BytesMut::new();
            enc.encode(f, &mut wire).unwrap();
            sizes.push(wire.len());
        }
        assert!(
            sizes[5] < sizes[0],
            "later blocks reuse the context: {sizes:?}"
        );

        // A fresh decoder cannot start in the middle of the stream.
        let mut enc = FrameEncoder::new();
        let mut wire = BytesMut::new();
        enc.encode(&frames[0], &mut wire).unwrap();
        let mut second = BytesMut::new();
        enc.encode(&frames[1], &mut second).unwrap();
        assert!(FrameDecoder::new().decode(&mut second).is_err());
    }

    #[test]
    fn decodes_a_block_compressed_by_c_zlib() {
        // A SYN_STREAM header block for {"streamtype": "stdout"} produced by C zlib
        // (Python: zlib.compressobj(9, zdict=SPDY dictionary) + Z_SYNC_FLUSH), i.e. what
        // Go's compress/zlib writes too: the FDICT header with the dictionary's Adler-32.
        let block: &[u8] = include_bytes!("testdata/syn_stream_stdout.zlib");
        let mut body = BytesMut::new();
        body.put_u32(1);
        body.put_u32(0);
        body.put_u8(0);
        body.put_u8(0);
        body.put_slice(block);
        let mut wire = BytesMut::new();
        control(&mut wire, TYPE_SYN_STREAM, 0, &body).unwrap();
        let f = FrameDecoder::new().decode(&mut wire).unwrap().unwrap();
        let Frame::SynStream { headers, .. } = f else {
            panic!("{f:?}")
        };
        assert_eq!(headers.get("streamType"), Some("stdout"));
    }

    #[test]
    fn encoder_output_starts_with_the_dictionary_id() {
        let mut enc = FrameEncoder::new();
        let block = enc.compress_headers(&hdrs(&[("a", "b")])).unwrap();
        // CMF/FLG with FDICT set, then the SPDY/3 dictionary's Adler-32.
        assert_eq!(block[1] & 0x20, 0x20, "FDICT");
        assert_eq!(&block[2..6], &0xe3c6_a7c2u32.to_be_bytes());
    }

    #[test]
    fn unknown_control_frames_are_skipped() {
        let mut wire = BytesMut::new();
        control(&mut wire, 0x0a, 0, b"creds").unwrap();
        FrameEncoder::new()
            .encode(&Frame::Ping { id: 2 }, &mut wire)
            .unwrap();
        assert_eq!(
            FrameDecoder::new().decode(&mut wire).unwrap(),
            Some(Frame::Ping { id: 2 })
        );
    }
}
