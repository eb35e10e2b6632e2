//! `include/souk.h` must be what cbindgen makes of `src/lib.rs` today.
//! Regenerate with `SOUK_REGEN_HEADER=1 cargo test -p souk-ffi --test header`.

use std::path::Path;

#[test]
fn header_matches_the_rust_declarations() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen parses the crate");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = crate_dir.join("include/souk.h");
    if std::env::var_os("SOUK_REGEN_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "ffi/include/souk.h is stale: run SOUK_REGEN_HEADER=1 cargo test -p souk-ffi --test header"
    );
}
