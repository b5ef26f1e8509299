//! The `metav1.Status` written on the error stream when an exec or attach ends.
//!
//! Protocol v4 (SPDY and WebSocket) writes the status as JSON, including success, so the client
//! learns the exit code: `Failure` with reason `NonZeroExitCode` and an `ExitCode` cause whose
//! message is the decimal code. Older protocols write only the message of a failure, as text.

use serde::{Deserialize, Serialize};

use super::protocol::{CAUSE_EXIT_CODE, REASON_NON_ZERO_EXIT_CODE};
use super::StreamError;

/// The subset of `metav1.Status` the streaming protocols use, with its JSON field names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub metadata: ListMeta,
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub code: i32,
}

/// Always empty here, but Go always emits `"metadata":{}`; keeping it makes the bytes match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListMeta {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDetails {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
}

/// A cause; note that Go names the `Type` field `reason` on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCause {
    #[serde(rename = "reason", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

pub const STATUS_SUCCESS: &str = "Success";
pub const STATUS_FAILURE: &str = "Failure";

impl Status {
    pub fn success() -> Self {
        Status {
            status: STATUS_SUCCESS.into(),
            ..Default::default()
        }
    }

    /// A command that ran and exited with `code` (non-zero).
    pub fn exit_code(cmd: &[String], code: i32) -> Self {
        // Go's `%v` of a []string, which is how containerd words it.
        let cmd = format!("[{}]", cmd.join(" "));
        Status {
            status: STATUS_FAILURE.into(),
            message: format!(
                "command terminated with non-zero exit code: error executing command {cmd}, exit code {code}"
            ),
            reason: REASON_NON_ZERO_EXIT_CODE.into(),
            details: Some(StatusDetails {
                causes: vec![StatusCause {
                    kind: CAUSE_EXIT_CODE.into(),
                    message: code.to_string(),
                }],
            }),
            ..Default::default()
        }
    }

    /// A runtime error: `NotFound` keeps its meaning (HTTP 404 semantics), anything else is an
    /// internal error, the way the kubelet wraps every non-exit error.
    pub fn from_error(what: &str, err: &StreamError) -> Self {
        let (code, reason, message) = match err {
            StreamError::NotFound(m) => (404, "NotFound", m.clone()),
            other => (
                500,
                "InternalError",
                format!("Internal error occurred: error {what}: {other}"),
            ),
        };
        Status {
            status: STATUS_FAILURE.into(),
            message,
            reason: reason.into(),
            details: Some(StatusDetails {
                causes: vec![StatusCause {
                    kind: String::new(),
                    message: err.to_string(),
                }],
            }),
            code,
            ..Default::default()
        }
    }

    pub fn is_success(&self) -> bool {
        self.status == STATUS_SUCCESS
    }

    /// The exit code if this status reports a command's non-zero exit.
    pub fn exit_code_cause(&self) -> Option<i32> {
        if self.reason != REASON_NON_ZERO_EXIT_CODE {
            return None;
        }
        self.details
            .as_ref()?
            .causes
            .iter()
            .find(|c| c.kind == CAUSE_EXIT_CODE)
            .and_then(|c| c.message.parse().ok())
    }

    /// The bytes protocol v4 writes: JSON, success included.
    pub fn to_v4_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The bytes protocols v1–v3 write: the message of a failure, nothing on success.
    pub fn to_v1_bytes(&self) -> Vec<u8> {
        if self.is_success() {
            Vec::new()
        } else {
            self.message.clone().into_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_matches_go_encoding() {
        assert_eq!(
            String::from_utf8(Status::success().to_v4_bytes()).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        assert!(Status::success().to_v1_bytes().is_empty());
    }

    #[test]
    fn exit_code_round_trips() {
        let st = Status::exit_code(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        let json = String::from_utf8(st.to_v4_bytes()).unwrap();
        assert!(
            json.contains(r#""reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}"#),
            "{json}"
        );
        let back: Status = serde_json::from_str(&json).unwrap();
        assert_eq!(back.exit_code_cause(), Some(3));
        assert!(!back.is_success());
    }

    #[test]
    fn not_found_keeps_its_reason() {
        let st = Status::from_error(
            "executing",
            &StreamError::NotFound("container c1 not found".into()),
        );
        assert_eq!(st.reason, "NotFound");
        assert_eq!(st.code, 404);
        assert_eq!(st.to_v1_bytes(), b"container c1 not found");
        let st = Status::from_error("executing", &StreamError::Internal("boom".into()));
        assert_eq!(st.message, "Internal error occurred: error executing: boom");
    }
}
