//! The error body every API failure carries.
//!
//! `error` is for people; `code` is for programs. A client decides by the
//! code (and the HTTP status), never by the message: the CNI plugin creates
//! a missing tenant on [`ErrorCode::UnknownTenant`], and retries the same
//! request id on [`ErrorCode::OutcomeUnknown`].

use serde::{Deserialize, Serialize};

/// What went wrong, for programs.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or invalid (400).
    BadRequest,
    /// No such route or object (404).
    NotFound,
    /// The named tenant does not exist (404).
    UnknownTenant,
    /// The named segment does not exist in its tenant (404).
    UnknownSegment,
    /// The named node does not exist (404).
    UnknownNode,
    /// The named policy does not exist (404).
    UnknownPolicy,
    /// The cluster's state refuses the request (409).
    Conflict,
    /// A leader-only request reached a node that does not lead (421).
    Misdirected,
    /// The cluster cannot take requests now (no leader, no quorum, not
    /// ready); nothing was written (503).
    Unavailable,
    /// The write was submitted but its outcome is not known by the deadline:
    /// it may still be applied. Retry with the same request id (503).
    OutcomeUnknown,
    /// A bug or a local failure (500).
    Internal,
    /// No valid credential (401).
    Unauthorized,
    /// The credential may not do this (403).
    Forbidden,
    /// The request body is larger than the route takes (413).
    PayloadTooLarge,
    /// A code this client does not know (from a newer node).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// Whether asking again later (with the same request id) may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Misdirected | ErrorCode::Unavailable | ErrorCode::OutcomeUnknown
        )
    }
}

/// `{"error": "...", "code": "..."}`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ErrorBody {
    pub error: String,
    /// Absent in answers of nodes older than the code (read as `Other`).
    #[serde(default = "other")]
    pub code: ErrorCode,
}

fn other() -> ErrorCode {
    ErrorCode::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_and_unknown_ones_are_other() {
        let body = ErrorBody {
            error: "no tenant named \"t9\"".into(),
            code: ErrorCode::UnknownTenant,
        };
        let text = serde_json::to_string(&body).expect("serialises");
        assert_eq!(
            text,
            r#"{"error":"no tenant named \"t9\"","code":"unknown_tenant"}"#
        );
        let newer: ErrorBody =
            serde_json::from_str(r#"{"error":"x","code":"from_the_future"}"#).expect("parses");
        assert_eq!(newer.code, ErrorCode::Other);
        let older: ErrorBody = serde_json::from_str(r#"{"error":"x"}"#).expect("parses");
        assert_eq!(older.code, ErrorCode::Other);
        assert!(ErrorCode::OutcomeUnknown.is_retryable());
        assert!(!ErrorCode::Conflict.is_retryable());
    }
}
