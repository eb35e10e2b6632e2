//! The one error type every foreign call throws: the server's typed status,
//! or why no answer came.

use souk_client::ClientError;
use souk_wire::api::{ApiError, ErrorStatus};

/// Why a call failed. The first group is the server's verdict (the
/// request arrived and was refused); the rest say why no verdict came.
/// `retry_after_ms` is the server's hint; the SDK has already retried
/// `Busy` and `Unavailable` with the same idempotency key before throwing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum SoukError {
    /// The input was refused: by the server, or by the SDK before sending
    /// (an identifier with spaces, a field over a protocol limit).
    #[error("bad request: {detail}")]
    BadRequest { detail: String },
    /// Not signed in, wrong credentials, or a session that ended.
    #[error("unauthenticated: {detail}")]
    Unauthenticated { detail: String },
    #[error("forbidden: {detail}")]
    Forbidden { detail: String },
    #[error("not found: {detail}")]
    NotFound { detail: String },
    /// The request contradicts the current state (an order no longer
    /// cancellable, a total that changed since it was shown).
    #[error("conflict: {detail}")]
    Conflict { detail: String },
    /// Sold out: fewer units are left than were asked for.
    #[error("insufficient stock: {detail}")]
    InsufficientStock { detail: String },
    /// Rate limited (too many sign-in attempts, a full cart).
    #[error("limit exceeded: {detail} (retry after {retry_after_ms} ms)")]
    LimitExceeded { detail: String, retry_after_ms: u32 },
    /// The server is overloaded; try again after `retry_after_ms`.
    #[error("busy: {detail} (retry after {retry_after_ms} ms)")]
    Busy { detail: String, retry_after_ms: u32 },
    /// A dependency of the server (its store, the payment provider) is down.
    #[error("unavailable: {detail} (retry after {retry_after_ms} ms)")]
    Unavailable { detail: String, retry_after_ms: u32 },
    #[error("server error: {detail}")]
    Internal { detail: String },
    /// This server version does not offer the operation.
    #[error("not offered: {detail}")]
    NotOffered { detail: String },
    /// The server could not be reached, or the connection was lost, after
    /// every retry.
    #[error("transport: {detail}")]
    Transport { detail: String },
    /// No reply in time, after every retry.
    #[error("timed out")]
    Timeout,
    /// The server's reply could not be understood (a version mismatch or a
    /// bug).
    #[error("protocol: {detail}")]
    Protocol { detail: String },
    /// The client options cannot work (no trust given, a bad fingerprint).
    #[error("configuration: {detail}")]
    Config { detail: String },
    /// The app's `SessionStore` failed to load or save the session.
    #[error("session storage: {detail}")]
    SessionStorage { detail: String },
}

impl From<ApiError> for SoukError {
    fn from(error: ApiError) -> SoukError {
        let detail = error.message;
        let retry_after_ms = error.retry_after_ms;
        match error.status {
            ErrorStatus::BadRequest => SoukError::BadRequest { detail },
            ErrorStatus::Unauthenticated => SoukError::Unauthenticated { detail },
            ErrorStatus::Forbidden => SoukError::Forbidden { detail },
            ErrorStatus::NotFound => SoukError::NotFound { detail },
            ErrorStatus::Conflict => SoukError::Conflict { detail },
            ErrorStatus::InsufficientStock => SoukError::InsufficientStock { detail },
            ErrorStatus::LimitExceeded => SoukError::LimitExceeded {
                detail,
                retry_after_ms,
            },
            ErrorStatus::Busy => SoukError::Busy {
                detail,
                retry_after_ms,
            },
            ErrorStatus::Unavailable => SoukError::Unavailable {
                detail,
                retry_after_ms,
            },
            ErrorStatus::Internal => SoukError::Internal { detail },
            ErrorStatus::NotOffered => SoukError::NotOffered { detail },
        }
    }
}

impl From<ClientError> for SoukError {
    fn from(error: ClientError) -> SoukError {
        match error {
            ClientError::Api(error) => error.into(),
            ClientError::Transport(detail) => SoukError::Transport { detail },
            ClientError::Timeout => SoukError::Timeout,
            ClientError::Encode(error) => SoukError::BadRequest {
                detail: error.to_string(),
            },
            ClientError::InvalidRequest(error) => SoukError::BadRequest {
                detail: error.to_string(),
            },
            ClientError::Decode(error) => SoukError::Protocol {
                detail: error.to_string(),
            },
            ClientError::UnexpectedReply(detail) => SoukError::Protocol { detail },
            ClientError::Config(detail) => SoukError::Config { detail },
        }
    }
}

/// What a `SessionStore` that threw something other than a `SoukError`
/// becomes.
impl From<uniffi::UnexpectedUniFFICallbackError> for SoukError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> SoukError {
        SoukError::SessionStorage {
            detail: error.reason,
        }
    }
}
