//! souk's wire protocol.
//!
//! - `schema/*.fbs` is the source of truth for the whole public API.
//! - `generated` is flatc's Rust output for it, committed and never edited by
//!   hand (`wire/regen.sh` rewrites it; a test fails when it is stale). It is
//!   private: nothing outside this crate sees a FlatBuffers type.
//! - `api` is the typed model every other crate uses: plain Rust values,
//!   already validated.
//! - `codec` converts between the two, once, at the boundary: `Encoder` writes
//!   frames, `decode_*` verify and convert payloads.
//! - `frame` is the length-prefix framing, `limits` every size bound.
//!
//! This crate performs no I/O and knows nothing of QUIC, sockets or tokio.

pub mod api;
pub mod codec;
pub mod frame;
pub mod limits;
pub mod samples;

#[allow(
    unsafe_code,
    unused_imports,
    dead_code,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    deprecated,
    mismatched_lifetime_syntaxes,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic
)]
mod generated {
    include!("generated/souk_generated.rs");
}
