//! Decode cost per frame: tapwatch's `wire::decode` against etherparse's lax slicer
//! alone (the floor it builds on), and capture framing per record.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::capture::write::PcapWriter;
use engine::capture::CaptureReader;
use engine::time::Timestamp;
use engine::wire::{self, LinkType};
use std::hint::black_box;

fn decode(c: &mut Criterion) {
    let data = tapwatch_benches::data_frame(7, 1448, false);
    let syn = tapwatch_benches::data_frame(7, 0, true);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("etherparse_lax_slice_data_1448", |b| {
        b.iter(|| black_box(etherparse::LaxSlicedPacket::from_ethernet(black_box(&data)).is_ok()))
    });
    g.bench_function("wire_decode_data_1448", |b| {
        b.iter(|| {
            black_box(wire::decode(LinkType::Ethernet, black_box(&data), data.len() as u32).is_ok())
        })
    });
    g.bench_function("wire_decode_syn", |b| {
        b.iter(|| {
            black_box(wire::decode(LinkType::Ethernet, black_box(&syn), syn.len() as u32).is_ok())
        })
    });
    g.finish();

    let mut w = PcapWriter::new(Vec::new(), 1).unwrap();
    for i in 0..10_000u64 {
        w.write_frame(Timestamp(i * 1000), &data, data.len() as u32)
            .unwrap();
    }
    let file = w.into_inner();
    let mut g = c.benchmark_group("capture");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("pcap_read_10k_frames", |b| {
        b.iter(|| {
            CaptureReader::new(black_box(&file))
                .unwrap()
                .filter(|f| f.is_ok())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
