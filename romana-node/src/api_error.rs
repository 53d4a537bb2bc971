//! [`ApiError`]: an API failure, whose HTTP status and machine-readable
//! [`ErrorCode`] are decided here and only here. Returned by the handlers
//! ([`crate::api`]), the write path and the batcher ([`crate::node`]).

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use raft_store::state::Rejection;
use romana_api::{ErrorBody, ErrorCode};

/// An API failure. Its HTTP status and its [`ErrorCode`] are decided here
/// and only here; the handlers, the write path and the batcher return it.
#[derive(Debug, Clone)]
pub enum ApiError {
    BadRequest(String),
    /// A request larger than its route or the log takes (413).
    TooLarge(String),
    /// No credentials, or revoked ones (401).
    Unauthorized(String),
    /// Credentials that do not allow this request (403).
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    /// Sent to a node that is not the leader (forwarded writes only).
    Misdirected(String),
    /// No leader, no quorum, not ready: nothing was written, try again later.
    Unavailable(String),
    /// The write was handed to Raft but neither its commit nor its apply on
    /// this node was seen by the deadline: it may still take effect. The
    /// caller retries with the same request id, which answers the committed
    /// outcome (requests are idempotent by id).
    OutcomeUnknown(String),
    /// The state machine refused the request (a committed outcome).
    Rejected(Rejection),
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Unavailable(_) | ApiError::OutcomeUnknown(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Rejected(rejection) => match rejection_code(rejection) {
                ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
                ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::UnknownNode
                | ErrorCode::UnknownTenant
                | ErrorCode::UnknownSegment
                | ErrorCode::UnknownPolicy => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            },
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code of the error body.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::Misdirected(_) => ErrorCode::Misdirected,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
            ApiError::Rejected(rejection) => rejection_code(rejection),
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m)
            | ApiError::TooLarge(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::Misdirected(m)
            | ApiError::Unavailable(m)
            | ApiError::OutcomeUnknown(m)
            | ApiError::Internal(m) => m.clone(),
            ApiError::Rejected(rejection) => rejection.to_string(),
        }
    }

    /// The error for a request the state machine rejected.
    pub fn from_rejection(rejection: &Rejection) -> Self {
        ApiError::Rejected(rejection.clone())
    }

    /// The write's outcome is unknown after `timeout`.
    pub fn outcome_unknown(timeout: Duration, what: &str) -> Self {
        ApiError::OutcomeUnknown(format!(
            "{what} within {} ms (is a quorum of voters up?); it may still be applied later: retry with the same request id to find out",
            timeout.as_millis()
        ))
    }
}

/// The code of a rejection: the four "no such X" have their own (a client
/// may create the missing tenant), the rest by kind.
fn rejection_code(rejection: &Rejection) -> ErrorCode {
    match rejection {
        Rejection::UnknownNode { .. } => ErrorCode::UnknownNode,
        Rejection::UnknownTenant { .. } => ErrorCode::UnknownTenant,
        Rejection::UnknownSegment { .. } => ErrorCode::UnknownSegment,
        Rejection::UnknownPolicy { .. } => ErrorCode::UnknownPolicy,
        Rejection::InvalidArgument { .. }
        | Rejection::InvalidMeta { .. }
        | Rejection::UnsupportedFormat { .. } => ErrorCode::BadRequest,
        Rejection::NotInitialised => ErrorCode::Unavailable,
        Rejection::AlreadyInitialised { .. }
        | Rejection::NodeNameTaken { .. }
        | Rejection::NodeIdTaken { .. }
        | Rejection::HostHasAddresses { .. }
        | Rejection::HostsExhausted { .. }
        | Rejection::TenantExists { .. }
        | Rejection::TenantsExhausted { .. }
        | Rejection::TenantHasAddresses { .. }
        | Rejection::SegmentExists { .. }
        | Rejection::SegmentsExhausted { .. }
        | Rejection::SegmentHasAddresses { .. }
        | Rejection::DefaultSegmentIsPermanent { .. }
        | Rejection::OwnerHoldsOtherAddress { .. }
        | Rejection::BlockFull { .. }
        | Rejection::RequestIdReused { .. }
        | Rejection::JoinTokenRefused { .. } => ErrorCode::Conflict,
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status().as_u16(), self.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.message(),
                code,
            }),
        )
            .into_response();
        // For the metrics, which count CNI errors by code.
        response.extensions_mut().insert(code);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_are_decided_together() {
        // Goal: an unknown outcome is a retryable 503, never a 409; a
        // missing tenant has its own code; other rejections keep their
        // statuses.
        let unknown = ApiError::outcome_unknown(Duration::from_millis(5000), "no commit");
        assert_eq!(unknown.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unknown.code(), ErrorCode::OutcomeUnknown);
        assert!(unknown.code().is_retryable());

        let tenant = ApiError::from_rejection(&Rejection::UnknownTenant { name: "t9".into() });
        assert_eq!(tenant.status(), StatusCode::NOT_FOUND);
        assert_eq!(tenant.code(), ErrorCode::UnknownTenant);
        assert_eq!(tenant.to_string(), "404: no tenant named \"t9\"");

        let exists = ApiError::from_rejection(&Rejection::TenantExists { name: "t1".into() });
        assert_eq!(exists.status(), StatusCode::CONFLICT);
        assert_eq!(exists.code(), ErrorCode::Conflict);

        let uninitialised = ApiError::from_rejection(&Rejection::NotInitialised);
        assert_eq!(uninitialised.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
