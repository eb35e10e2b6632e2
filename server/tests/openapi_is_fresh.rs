//! `server/openapi.json` is what the TypeScript client is generated from
//! and what API consumers read: it must be the document the server serves.
//! `SOUK_WRITE_OPENAPI=1 cargo test -p souk-server --test openapi_is_fresh`
//! rewrites it after a change to the routes or their JSON types.

use std::path::Path;

#[test]
fn committed_openapi_document_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let current = souk_server::io::http::openapi::document();
    if std::env::var_os("SOUK_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &current).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "server/openapi.json is stale: rerun with SOUK_WRITE_OPENAPI=1 and commit it"
    );
    let document: serde_json::Value = serde_json::from_str(&current).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/v1/products/{product_id}",
        "/v1/checkout",
        "/v1/cart/lines",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
}
