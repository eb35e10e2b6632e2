use souk_wire::api::{ApiError, ErrorStatus};
use souk_wire::codec::{DecodeError, EncodeError};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("server: {0}")]
    Api(ApiError),
    /// The connection could not be made or was lost, after every retry.
    #[error("transport: {0}")]
    Transport(String),
    /// No reply within the request timeout, after every retry.
    #[error("timed out")]
    Timeout,
    /// The request could not be encoded (it is over a protocol limit).
    #[error("request refused before sending: {0}")]
    Encode(EncodeError),
    /// A request given as bytes (`Client::call_frame`) is not a valid request.
    #[error("invalid request: {0}")]
    InvalidRequest(DecodeError),
    /// The server's reply could not be decoded.
    #[error("malformed reply: {0}")]
    Decode(DecodeError),
    /// The reply was valid but not the body this call expects.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
    /// The configuration cannot work (for example an unreadable CA file).
    #[error("configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// The server's status, when the server answered.
    pub fn status(&self) -> Option<ErrorStatus> {
        match self {
            ClientError::Api(error) => Some(error.status),
            _ => None,
        }
    }
}
