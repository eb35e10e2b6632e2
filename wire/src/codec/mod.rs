//! Bytes ⇄ `api` values: the one place where FlatBuffers types meet the rest
//! of souk.
//!
//! Decoders take a whole frame (header and payload). Decoding runs in three
//! steps, each refusing bad input with a typed `DecodeError` and never
//! panicking: the frame length is checked against the message's bound (in
//! `frame`), the FlatBuffers verifier walks the buffer
//! under `VerifierOptions` bounded by `limits`, and the conversion to `api`
//! values checks every string length, list length and identifier rule before
//! it allocates.
//!
//! Encoding writes a size-prefixed buffer, which is exactly a frame: the
//! FlatBuffers size prefix is the little-endian `u32` length header.
//!
//! The enums both the schema and `api` define are mapped in `enums`, both
//! directions from one list of variants.

mod decode;
mod encode;
mod enums;

use std::fmt;

pub use decode::{decode_event, decode_request, decode_response};
pub use encode::{EncodeError, Encoder};

use crate::api::Violation;
use crate::frame::FrameError;

/// Why bytes could not be turned into an API value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The length header is wrong: over the bound, zero, or not the length
    /// of the bytes that follow.
    Frame(FrameError),
    /// The FlatBuffers verifier refused the buffer: truncated, out-of-bounds
    /// offsets, too deep, too many tables, invalid UTF-8 and the like.
    Malformed(String),
    /// A union carried a member this build does not know (a newer peer).
    UnknownBody { tag: u8 },
    /// The message has no body.
    MissingBody,
    /// An enum field carried a value this build does not know.
    UnknownEnum { field: &'static str, value: u8 },
    /// A field broke a rule of the API (see `limits`).
    Field {
        field: &'static str,
        violation: Violation,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Frame(error) => write!(f, "{error}"),
            DecodeError::Malformed(reason) => write!(f, "malformed message: {reason}"),
            DecodeError::UnknownBody { tag } => write!(f, "unknown message type {tag}"),
            DecodeError::MissingBody => write!(f, "message has no body"),
            DecodeError::UnknownEnum { field, value } => {
                write!(f, "{field}: unknown value {value}")
            }
            DecodeError::Field { field, violation } => write!(f, "{field}: {violation}"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
mod tests;
