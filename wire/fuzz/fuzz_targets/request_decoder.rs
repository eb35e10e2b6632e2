//! The server's request decoder on arbitrary bytes: it must never panic,
//! and whatever it accepts must survive a re-encode and decode unchanged.
//!
//!     cargo fuzz run --fuzz-dir wire/fuzz request_decoder
#![no_main]

use libfuzzer_sys::fuzz_target;
use souk_wire::codec::{Encoder, decode_request};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_request(data) {
        let mut encoder = Encoder::new();
        let frame = encoder.request(&request).expect("a decoded request fits its bound");
        assert_eq!(decode_request(frame).as_ref(), Ok(&request));
    }
});
