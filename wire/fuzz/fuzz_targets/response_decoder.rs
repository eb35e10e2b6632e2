//! The client's response decoder on arbitrary bytes: it must never panic.
//!
//!     cargo fuzz run --fuzz-dir wire/fuzz response_decoder
#![no_main]

use libfuzzer_sys::fuzz_target;
use souk_wire::codec::{decode_event, decode_response};

fuzz_target!(|data: &[u8]| {
    let _ = decode_response(data);
    let _ = decode_event(data);
});
