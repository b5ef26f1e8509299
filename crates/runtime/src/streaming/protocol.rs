//! Wire constants shared by the server, the SPDY client and tests: protocol names, header
//! names, stream types and WebSocket channel numbers, as apimachinery defines them.

/// Request header listing the SPDY stream protocols a client speaks (one value per protocol,
/// or comma-separated); the response carries the one chosen.
pub const HEADER_PROTOCOL_VERSION: &str = "X-Stream-Protocol-Version";
/// Response header listing what the server accepts, sent when negotiation fails.
pub const HEADER_ACCEPTED_PROTOCOL_VERSIONS: &str = "X-Accepted-Stream-Protocol-Versions";
/// The `Upgrade` token of SPDY connections.
pub const SPDY_31: &str = "SPDY/3.1";

/// Remote-command (exec/attach) protocols over SPDY, newest first. v4 reports the exit code
/// as a JSON `Status`; v3 adds the resize stream; v2 fixed stream handling; v1 is the original.
pub const STREAM_PROTOCOL_V4: &str = "v4.channel.k8s.io";
pub const STREAM_PROTOCOL_V3: &str = "v3.channel.k8s.io";
pub const STREAM_PROTOCOL_V2: &str = "v2.channel.k8s.io";
pub const STREAM_PROTOCOL_V1: &str = "channel.k8s.io";
/// What the server offers for exec/attach over SPDY, in preference order.
pub const SUPPORTED_STREAM_PROTOCOLS: &[&str] = &[
    STREAM_PROTOCOL_V4,
    STREAM_PROTOCOL_V3,
    STREAM_PROTOCOL_V2,
    STREAM_PROTOCOL_V1,
];
/// The only port-forward protocol over SPDY.
pub const PORT_FORWARD_PROTOCOL_V1: &str = "portforward.k8s.io";

/// WebSocket subprotocols for exec/attach. v5 adds the client's "close channel" message;
/// the base64 variants carry text frames with an ASCII channel digit and base64 payloads.
pub const WS_PROTOCOL_V5: &str = "v5.channel.k8s.io";
pub const WS_PROTOCOL_V4: &str = "v4.channel.k8s.io";
pub const WS_PROTOCOL_V4_BASE64: &str = "v4.base64.channel.k8s.io";
pub const WS_PROTOCOL_V1: &str = "channel.k8s.io";
pub const WS_PROTOCOL_V1_BASE64: &str = "base64.channel.k8s.io";

/// The `streamType` header of each SPDY stream.
pub const HEADER_STREAM_TYPE: &str = "streamType";
pub const STREAM_TYPE_ERROR: &str = "error";
pub const STREAM_TYPE_STDIN: &str = "stdin";
pub const STREAM_TYPE_STDOUT: &str = "stdout";
pub const STREAM_TYPE_STDERR: &str = "stderr";
pub const STREAM_TYPE_RESIZE: &str = "resize";
pub const STREAM_TYPE_DATA: &str = "data";
/// Port-forward stream headers: the target port and the id pairing a data and an error stream.
pub const HEADER_PORT: &str = "port";
pub const HEADER_REQUEST_ID: &str = "requestID";

/// WebSocket channel numbers (the first byte of every message).
pub const CHANNEL_STDIN: u8 = 0;
pub const CHANNEL_STDOUT: u8 = 1;
pub const CHANNEL_STDERR: u8 = 2;
pub const CHANNEL_ERROR: u8 = 3;
pub const CHANNEL_RESIZE: u8 = 4;
/// v5: a client message `[255, n]` closes (half-closes) channel n.
pub const CHANNEL_CLOSE: u8 = 255;

/// `Status.reason` and the cause type of a command that ran and exited non-zero.
pub const REASON_NON_ZERO_EXIT_CODE: &str = "NonZeroExitCode";
pub const CAUSE_EXIT_CODE: &str = "ExitCode";
