//! Encoding and decoding costs of the hot messages.
//!
//!     cargo bench -p souk-bench --bench wire

use criterion::{Criterion, criterion_group, criterion_main};
use souk_wire::api::{Request, RequestBody, ResponseBody};
use souk_wire::codec::{Encoder, decode_request, decode_response};
use souk_wire::samples;
use std::hint::black_box;

fn wire(c: &mut Criterion) {
    let mut encoder = Encoder::new();
    let get_product = Request {
        idempotency_key: None,
        body: RequestBody::GetProduct {
            product_id: samples::product().id,
        },
    };
    let request = encoder.request(&get_product).unwrap().to_vec();
    c.bench_function("request verify + decode (get_product)", |b| {
        b.iter(|| decode_request(black_box(&request)).unwrap())
    });

    let detail = Ok(ResponseBody::ProductDetail(Box::new(samples::product())));
    c.bench_function("response build (product detail)", |b| {
        b.iter(|| encoder.response(black_box(&detail)).unwrap().len())
    });

    let reply = Encoder::new().response(&detail).unwrap().to_vec();
    c.bench_function("response verify + decode (product detail)", |b| {
        b.iter(|| decode_response(black_box(&reply)).unwrap())
    });

    let upsert = &samples::requests()[9];
    let upsert = Encoder::new().request(upsert).unwrap().to_vec();
    c.bench_function("request verify + decode (admin upsert product)", |b| {
        b.iter(|| decode_request(black_box(&upsert)).unwrap())
    });
}

criterion_group!(benches, wire);
criterion_main!(benches);
