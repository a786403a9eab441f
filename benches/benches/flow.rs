//! Flow-table lookup and per-packet worker cost on established sessions.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use engine::session::PointId;
use engine::table::FlowTable;
use engine::time::{Nanos, Timestamp};
use engine::wire::{self, LinkType};
use engine::worker::{PacketMeta, Worker, WorkerConfig};
use std::hint::black_box;

const SESSIONS: u32 = 100_000;

fn metas(n: u32, syn: bool) -> Vec<PacketMeta> {
    (0..n)
        .map(|i| {
            let f = tapwatch_benches::data_frame(i, 100, syn);
            PacketMeta::new(
                Timestamp(1_000_000_000),
                PointId(0),
                wire::decode(LinkType::Ethernet, &f, f.len() as u32).unwrap(),
            )
        })
        .collect()
}

fn flow(c: &mut Criterion) {
    let syns = metas(SESSIONS, true);
    let data = metas(SESSIONS, false);

    let mut table = FlowTable::new(
        SESSIONS as usize,
        1,
        Nanos::from_secs(120),
        Nanos::from_secs(2),
    );
    for m in &syns {
        let s = engine::session::Session::new(m.key, m.ts, m.side, &m.pkt);
        table.insert(s, m.hash, m.ts).unwrap();
    }
    let mut g = c.benchmark_group("flow_table");
    g.throughput(Throughput::Elements(u64::from(SESSIONS)));
    g.bench_function("find_hit_100k_sessions", |b| {
        b.iter(|| {
            data.iter()
                .filter(|m| table.find(m.hash, &m.key).is_some())
                .count()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("worker");
    g.throughput(Throughput::Elements(u64::from(SESSIONS)));
    g.bench_function("process_data_on_100k_open_sessions", |b| {
        b.iter_batched_ref(
            || {
                let mut w = Worker::new(WorkerConfig {
                    max_sessions: SESSIONS as usize,
                    ..WorkerConfig::default()
                });
                for m in &syns {
                    w.process(m, &[], &mut |_| {});
                }
                w
            },
            |w| {
                for m in &data {
                    w.process(black_box(m), &[], &mut |r| {
                        black_box(r);
                    });
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, flow);
criterion_main!(benches);
