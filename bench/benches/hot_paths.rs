//! Micro-benchmarks of the per-message hot paths of the core: encoding an
//! input, classifying an incoming frame, reading a result's `request_id`,
//! JSON ↔ msgpack (the C API's JSON path), and the bare client's rmp-serde
//! path for comparison.
//!
//! `cargo bench -p fal-realtime-bench --bench hot_paths`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fal_realtime::codec;
use fal_realtime_bench::{echo_id, Payload, PayloadKind};
use std::hint::black_box;

fn encoded(kind: PayloadKind) -> Bytes {
    let p = Payload::new(kind);
    codec::encode(&p.input("r12345")).unwrap()
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for kind in [PayloadKind::Small, PayloadKind::Large] {
        let p = Payload::new(kind);
        let len = encoded(kind).len() as u64;
        g.throughput(Throughput::Bytes(len));
        g.bench_function(format!("codec::encode/{}", kind.as_str()), |b| {
            b.iter(|| codec::encode(black_box(&p.input("r12345"))).unwrap())
        });
        g.bench_function(format!("rmp_serde::to_vec_named/{}", kind.as_str()), |b| {
            b.iter(|| rmp_serde::to_vec_named(black_box(&p.input("r12345"))).unwrap())
        });
    }
    g.finish();
}

fn classify(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    for kind in [PayloadKind::Small, PayloadKind::Large] {
        let bytes = encoded(kind);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(format!("classify_binary/{}", kind.as_str()), |b| {
            b.iter_batched(
                || bytes.clone(),
                |b| black_box(codec::classify_binary(b)),
                BatchSize::SmallInput,
            )
        });
        let msg = fal_realtime::Message::from_msgpack(bytes.clone());
        g.bench_function(format!("Message::request_id/{}", kind.as_str()), |b| {
            b.iter(|| black_box(black_box(&msg).request_id()))
        });
        g.bench_function(
            format!("bare echo_id (rmp_serde borrow)/{}", kind.as_str()),
            |b| b.iter(|| black_box(echo_id(black_box(&bytes)))),
        );
    }
    let text = r#"{"type":"x-fal-message","action":"timings","timing":0.012}"#;
    g.bench_function("classify_text/timings", |b| {
        b.iter(|| black_box(codec::classify_text(black_box(text))))
    });
    g.finish();
}

fn json(c: &mut Criterion) {
    let mut g = c.benchmark_group("json");
    let small = encoded(PayloadKind::Small);
    let json = codec::msgpack_to_json(&small).unwrap();
    g.bench_function("json_to_msgpack/small", |b| {
        b.iter(|| codec::json_to_msgpack(black_box(&json)).unwrap())
    });
    g.bench_function("msgpack_to_json/small", |b| {
        b.iter(|| codec::msgpack_to_json(black_box(&small)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, encode, classify, json);
criterion_main!(benches);
