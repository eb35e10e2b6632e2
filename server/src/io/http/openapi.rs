//! The OpenAPI 3.1 document, generated from the routes' own descriptions
//! and the JSON types they encode. `server/openapi.json` is a committed
//! copy (a test fails when it is stale), which the TypeScript client is
//! generated from.

use std::sync::LazyLock;

use bytes::Bytes;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};

use super::routes::ApiDoc;

/// The document as JSON, pretty-printed as committed.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serializes");
    text.push('\n');
    text
}

/// Built once, served as is.
pub fn document_bytes() -> Bytes {
    static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(document()));
    DOCUMENT.clone()
}

/// Adds what every operation shares: the problem responses and the two
/// ways to present an access token.
pub(super) struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                            "Problem",
                        ))))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses.insert(
                    "4XX".into(),
                    RefOr::T(problem(
                        "Refused: `code` says why (BadRequest, Unauthenticated, Forbidden, \
                         NotFound, Conflict, InsufficientStock, LimitExceeded)",
                    )),
                );
                responses.insert(
                    "5XX".into(),
                    RefOr::T(problem(
                        "Failed: Busy and Unavailable say when to retry (Retry-After)",
                    )),
                );
            }
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "access_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("souk_access"))),
        );
    }
}
