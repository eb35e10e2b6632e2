use proptest::prelude::*;

use super::*;
use crate::api::*;
use crate::{frame, limits, samples};

fn request_frame(encoder: &mut Encoder, request: &Request) -> Vec<u8> {
    let framed = encoder.request(request).expect("sample fits");
    frame::payload(framed, limits::REQUEST_BYTES_MAX).expect("encoder writes valid frames");
    framed.to_vec()
}

#[test]
fn every_request_round_trips() {
    let mut encoder = Encoder::new();
    let requests = samples::requests();
    let operations: Vec<_> = requests.iter().map(|r| r.body.operation()).collect();
    assert_eq!(
        operations,
        Operation::ALL,
        "samples cover every operation in order"
    );
    for request in requests {
        let payload = request_frame(&mut encoder, &request);
        assert_eq!(decode_request(&payload), Ok(request));
    }
}

#[test]
fn every_response_round_trips() {
    let mut encoder = Encoder::new();
    for response in samples::responses() {
        let framed = encoder.response(&response).expect("sample fits");
        assert_eq!(decode_response(framed), Ok(response));
    }
}

#[test]
fn every_event_round_trips() {
    let mut encoder = Encoder::new();
    for event in samples::events() {
        let framed = encoder.event(&event).expect("sample fits");
        assert_eq!(decode_event(framed), Ok(event));
    }
}

#[test]
fn mutating_request_without_idempotency_key_is_refused() {
    let mut encoder = Encoder::new();
    let request = Request {
        idempotency_key: None,
        body: RequestBody::CancelOrder {
            order_id: OrderId(1),
        },
    };
    let payload = request_frame(&mut encoder, &request);
    assert_eq!(
        decode_request(&payload),
        Err(DecodeError::Field {
            field: "idempotency_key",
            violation: Violation::Missing
        })
    );
}

#[test]
fn field_over_its_bound_is_a_typed_error() {
    let mut encoder = Encoder::new();
    let mut product = samples::product();
    product.name = "n".repeat(limits::TEXT_BYTES_MAX + 1);
    let request = Request {
        idempotency_key: Some(IdempotencyKey(7)),
        body: RequestBody::AdminUpsertProduct(Box::new(product)),
    };
    let payload = request_frame(&mut encoder, &request);
    assert_eq!(
        decode_request(&payload),
        Err(DecodeError::Field {
            field: "product.name",
            violation: Violation::TooLong {
                max: limits::TEXT_BYTES_MAX
            }
        })
    );
}

#[test]
fn too_many_variants_are_refused_before_conversion() {
    let mut encoder = Encoder::new();
    let mut product = samples::product();
    let template = product.variants[0].clone();
    product.variants = (0..=limits::VARIANTS_PER_PRODUCT_MAX)
        .map(|i| Variant {
            sku: Sku::new(format!("V-{i}")).unwrap(),
            ..template.clone()
        })
        .collect();
    let request = Request {
        idempotency_key: Some(IdempotencyKey(7)),
        body: RequestBody::AdminUpsertProduct(Box::new(product)),
    };
    let payload = request_frame(&mut encoder, &request);
    assert_eq!(
        decode_request(&payload),
        Err(DecodeError::Field {
            field: "product.variants",
            violation: Violation::TooMany {
                max: limits::VARIANTS_PER_PRODUCT_MAX
            }
        })
    );
}

#[test]
fn page_limits_are_clamped_and_price_ranges_checked() {
    let mut encoder = Encoder::new();
    let browse = |limit, min, max| Request {
        idempotency_key: None,
        body: RequestBody::BrowseCategory(BrowseCategory {
            limit,
            price: PriceRange {
                min_minor_units: min,
                max_minor_units: max,
            },
            ..BrowseCategory::default()
        }),
    };
    let decoded = decode_request(&request_frame(&mut encoder, &browse(0, None, None)));
    let Ok(Request {
        body: RequestBody::BrowseCategory(b),
        ..
    }) = decoded
    else {
        panic!("browse decodes: {decoded:?}");
    };
    assert_eq!(b.limit, limits::PAGE_LIMIT_DEFAULT);
    let decoded = decode_request(&request_frame(&mut encoder, &browse(5000, None, None)));
    let Ok(Request {
        body: RequestBody::BrowseCategory(b),
        ..
    }) = decoded
    else {
        panic!("browse decodes: {decoded:?}");
    };
    assert_eq!(b.limit, limits::PAGE_LIMIT_MAX);
    let inverted = browse(10, Some(500), Some(100));
    assert!(matches!(
        decode_request(&request_frame(&mut encoder, &inverted)),
        Err(DecodeError::Field {
            field: "price_max",
            ..
        })
    ));
}

#[test]
fn oversized_response_is_an_encode_error() {
    let mut encoder = Encoder::new();
    let huge = "x".repeat(limits::RESPONSE_BYTES_MAX);
    let response: Response = Ok(ResponseBody::Suggestions(vec![huge]));
    let error = encoder.response(&response).unwrap_err();
    assert_eq!(error.max, limits::RESPONSE_BYTES_MAX);
}

#[test]
fn truncated_and_empty_buffers_are_malformed() {
    let mut encoder = Encoder::new();
    let request = &samples::requests()[9];
    let payload = request_frame(&mut encoder, request);
    for len in [0, 3, 8, payload.len() / 2, payload.len() - 1] {
        assert!(
            decode_request(&payload[..len]).is_err(),
            "a {len}-byte prefix must not decode"
        );
    }
}

#[test]
fn response_error_messages_are_bounded() {
    let mut encoder = Encoder::new();
    let response: Response = Err(ApiError::bad_request("é".repeat(limits::MESSAGE_BYTES_MAX)));
    let framed = encoder.response(&response).unwrap();
    let Ok(Err(error)) = decode_response(framed) else {
        panic!("an error response decodes as an error");
    };
    assert!(error.message.len() <= limits::MESSAGE_BYTES_MAX);
    assert_eq!(error.status, ErrorStatus::BadRequest);
}

/// A `BrowseCategory` request with an 8-byte field (`price_min`) set, built
/// with the generated code as a client in another language builds it, and
/// finished by `finish`: the plain finish (wrong) or the size-prefixed one.
fn browse_with_price_min(size_prefixed: bool) -> Vec<u8> {
    use crate::generated::souk::wire as fb;
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let browse = fb::BrowseCategory::create(
        &mut fbb,
        &fb::BrowseCategoryArgs {
            price_min: Some(100),
            ..Default::default()
        },
    );
    let root = fb::Request::create(
        &mut fbb,
        &fb::RequestArgs {
            idempotency_key: None,
            body_type: fb::RequestBody::BrowseCategory,
            body: Some(browse.as_union_value()),
        },
    );
    if size_prefixed {
        fbb.finish_size_prefixed(root, Some("SOUK"));
        return fbb.finished_data().to_vec();
    }
    fbb.finish(root, Some("SOUK"));
    let plain = fbb.finished_data();
    let mut frame = (plain.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(plain);
    frame
}

#[test]
fn plain_buffer_with_a_length_in_front_is_refused_naming_the_rule() {
    let right = decode_request(&browse_with_price_min(true)).expect("size-prefixed decodes");
    let RequestBody::BrowseCategory(browse) = right.body else {
        panic!("a browse request: {right:?}");
    };
    assert_eq!(browse.price.min_minor_units, Some(100));

    let error = decode_request(&browse_with_price_min(false)).unwrap_err();
    let DecodeError::Malformed(message) = &error else {
        panic!("a verifier error: {error:?}");
    };
    for words in [
        "finish_size_prefixed",
        "FinishSizePrefixed",
        "4-byte length prefix",
        "Type `i64`",
        "field `price_min`",
    ] {
        assert!(message.contains(words), "{words:?} not in {message:?}");
    }
}

fn all_sample_payloads() -> Vec<Vec<u8>> {
    let mut encoder = Encoder::new();
    let mut payloads: Vec<Vec<u8>> = samples::requests()
        .iter()
        .map(|r| request_frame(&mut encoder, r))
        .collect();
    for response in samples::responses() {
        let framed = encoder.response(&response).unwrap();
        payloads.push(framed.to_vec());
    }
    payloads
}

fn decode_everything(bytes: &[u8]) {
    let _ = decode_request(bytes);
    let _ = decode_response(bytes);
    let _ = decode_event(bytes);
}

/// Random bytes behind a header that matches their length, so that they get
/// past the frame check and into the verifier.
fn framed(bytes: &[u8]) -> Vec<u8> {
    let mut framed = (bytes.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(bytes);
    framed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Arbitrary bytes never panic any decoder.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_everything(&bytes);
        decode_everything(&framed(&bytes));
    }

    /// Valid messages with random bytes overwritten never panic any decoder:
    /// this reaches far deeper into the verifier and conversion than noise.
    #[test]
    fn mutated_valid_messages_never_panic(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let payloads = all_sample_payloads();
        let mut bytes = payloads[which.index(payloads.len())].clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        decode_everything(&bytes);
    }

    /// Valid messages cut short never panic.
    #[test]
    fn truncated_valid_messages_never_panic(which in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let payloads = all_sample_payloads();
        let bytes = &payloads[which.index(payloads.len())];
        let len = cut.index(bytes.len());
        decode_everything(&bytes[..len]);
    }
}
