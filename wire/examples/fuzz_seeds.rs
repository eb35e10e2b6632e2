//! Writes one frame per sample message into fuzz corpus directories, so the
//! fuzzers start from valid messages of every type:
//!
//!     cargo run -p souk-wire --example fuzz_seeds
//!     cargo fuzz run --fuzz-dir wire/fuzz request_decoder

use std::path::Path;

use souk_wire::codec::Encoder;
use souk_wire::samples;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let requests = corpus.join("request_decoder");
    let responses = corpus.join("response_decoder");
    std::fs::create_dir_all(&requests)?;
    std::fs::create_dir_all(&responses)?;
    let mut encoder = Encoder::new();
    for (i, request) in samples::requests().iter().enumerate() {
        let frame = encoder.request(request).expect("samples fit");
        std::fs::write(requests.join(format!("sample-{i:02}")), frame)?;
    }
    for (i, response) in samples::responses().iter().enumerate() {
        let frame = encoder.response(response).expect("samples fit");
        std::fs::write(responses.join(format!("sample-{i:02}")), frame)?;
    }
    for (i, event) in samples::events().iter().enumerate() {
        let frame = encoder.event(event).expect("samples fit");
        std::fs::write(responses.join(format!("event-{i:02}")), frame)?;
    }
    println!("seeded {}", corpus.display());
    Ok(())
}
