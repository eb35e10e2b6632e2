//! Framing: one length-prefixed message per direction per QUIC stream.
//!
//! # The rule, for a client in any language
//!
//! A frame is a FlatBuffers *size-prefixed* buffer, byte for byte:
//!
//! - bytes `0..4` (`limits::FRAME_HEADER_BYTES`): the payload length, a `u32`,
//!   little-endian, counting the bytes after it and not itself;
//! - then exactly that many bytes: a FlatBuffers buffer whose root is a
//!   `Request` (client to server), a `Response` or an `Event` (server to
//!   client). souk's encoders write the file identifier `SOUK`; its decoders
//!   do not require one.
//!
//! The length is at least 1 (`FrameError::Empty`) and at most the bound of
//! the message (`FrameError::TooLarge`): `limits::REQUEST_BYTES_MAX` (64 KiB),
//! `limits::RESPONSE_BYTES_MAX` (1 MiB), `limits::EVENT_BYTES_MAX` (16 KiB).
//! A reader checks the header first, with `payload_len`, and allocates only
//! for a length within the bound. A request stream carries one frame.
//!
//! **Alignment counts the prefix.** FlatBuffers places every scalar at a
//! multiple of its size, and the decoder verifies the whole frame, so that
//! multiple is counted from byte 0 of the frame, the length included: an
//! 8-byte field (`long`, `ulong`, `double`) lies at a multiple of 8 from the
//! first byte of the header. The builder's size-prefixed finish pads the
//! buffer for exactly that: `finish_size_prefixed` (Rust),
//! `FinishSizePrefixed` (C++, Go, Python, C#), `finishSizePrefixed` (Java,
//! Kotlin, TypeScript), `finish(offset:addPrefix: true)` (Swift). A buffer
//! finished plainly and then given a 4-byte length in front has every 8-byte
//! table field 4 bytes off; the verifier refuses it, and the decode error
//! (the server's `BadRequest` message) names this rule. Such a frame decodes
//! while it happens to hold no 8-byte table field (a `Hello`, say, even with
//! an idempotency key: structs are read byte by byte, so their alignment is
//! not checked), so a client built that way can pass its first calls and
//! fail on a later one.
//!
//! # This module
//!
//! The encoder writes frames directly (a size-prefixed buffer is exactly a
//! frame); readers call `payload_len` on the header and refuse a frame over
//! the message's bound before they allocate for it. This module performs no
//! I/O: the server's and client's I/O layers read the header and then
//! exactly `payload_len` bytes.

use std::fmt;

use crate::limits::FRAME_HEADER_BYTES;

/// A frame header announced a payload that cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The payload is longer than the bound for this kind of message.
    TooLarge { len: usize, max: usize },
    /// A zero-length payload cannot hold a FlatBuffers root.
    Empty,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max} bytes")
            }
            FrameError::Empty => write!(f, "empty frame"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The payload length a header announces, checked against `payload_max`.
pub fn payload_len(
    header: [u8; FRAME_HEADER_BYTES],
    payload_max: usize,
) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > payload_max {
        return Err(FrameError::TooLarge {
            len,
            max: payload_max,
        });
    }
    Ok(len)
}

/// Splits a complete frame into its payload, checking the header: for
/// callers that hold a whole frame in memory (the FFI, tests).
pub fn payload(frame: &[u8], payload_max: usize) -> Result<&[u8], FrameError> {
    let Some((header, rest)) = frame.split_first_chunk::<FRAME_HEADER_BYTES>() else {
        return Err(FrameError::Empty);
    };
    let len = payload_len(*header, payload_max)?;
    if rest.len() != len {
        return Err(FrameError::TooLarge {
            len: rest.len(),
            max: len,
        });
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_over_the_bound_is_refused_before_reading_the_payload() {
        let header = 70_000u32.to_le_bytes();
        assert_eq!(
            payload_len(header, 65_536),
            Err(FrameError::TooLarge {
                len: 70_000,
                max: 65_536
            })
        );
        assert_eq!(payload_len(0u32.to_le_bytes(), 10), Err(FrameError::Empty));
        assert_eq!(payload_len(10u32.to_le_bytes(), 10), Ok(10));
    }

    #[test]
    fn payload_checks_the_declared_length_against_the_bytes() {
        let mut frame = 3u32.to_le_bytes().to_vec();
        frame.extend_from_slice(b"abc");
        assert_eq!(payload(&frame, 10), Ok(&b"abc"[..]));
        frame.push(b'd');
        assert!(payload(&frame, 10).is_err());
        assert_eq!(payload(&[1, 0], 10), Err(FrameError::Empty));
    }
}
