//! Cost of each stage of the replay path, single-threaded, on one capture file:
//! read only, read + decode, + flow hash, + worker, and the payload copy that live
//! capture adds (with and without the worker). Prints ns per packet for each, so
//! that a slowdown can be pinned to a stage. Usage: `stages FILE`.

#![allow(clippy::print_stdout, reason = "a command-line report")]

use std::time::Instant;

use engine::capture::CaptureReader;
use engine::session::PointId;
use engine::wire;
use engine::worker::{PacketMeta, Worker, WorkerConfig};

fn main() {
    let path = std::env::args().nth(1).expect("usage: stages FILE");
    let data = std::fs::read(&path).expect("read capture");
    let frames = CaptureReader::new(&data).expect("capture").count() as f64;
    let stage = |name: &str, f: &mut dyn FnMut() -> u64| {
        let t = Instant::now();
        let n = f();
        let ns = t.elapsed().as_nanos() as f64 / frames;
        println!(
            "{name:<28} {ns:>7.1} ns/packet  {:>6.2} Mpps  ({n})",
            1e3 / ns
        );
    };
    stage("read", &mut || {
        CaptureReader::new(&data)
            .unwrap()
            .flatten()
            .map(|f| f.data.len() as u64)
            .sum()
    });
    stage("read+decode", &mut || {
        CaptureReader::new(&data)
            .unwrap()
            .flatten()
            .filter(|f| wire::decode(f.link, f.data, f.wire_len).is_ok())
            .count() as u64
    });
    stage("read+decode+hash", &mut || {
        CaptureReader::new(&data)
            .unwrap()
            .flatten()
            .filter_map(|f| {
                wire::decode(f.link, f.data, f.wire_len)
                    .ok()
                    .map(|p| PacketMeta::new(f.ts, PointId(0), p))
            })
            .fold(0u64, |a, m| a ^ m.hash)
    });
    let mut worker = Worker::new(WorkerConfig::default());
    let mut records = 0u64;
    let mut kept = Vec::new();
    stage("read+decode+hash+worker", &mut || {
        for f in CaptureReader::new(&data).unwrap().flatten() {
            if let Ok(p) = wire::decode(f.link, f.data, f.wire_len) {
                let m = PacketMeta::new(f.ts, PointId(0), p).at(f.offset as u64);
                worker.process(&m, m.payload(&data), &mut |_| records += 1);
            }
        }
        worker.finish(&mut |_| records += 1);
        records
    });
    // Live capture copies each TCP payload out of the kernel's frame into the
    // worker's batch (docs/live.md, "Frames: copied, not lent"): the same work here,
    // into a 64 KiB area reused as the batches are.
    let mut area: Vec<u8> = Vec::with_capacity(65_536);
    stage("read+decode+hash+copy", &mut || {
        let mut n = 0u64;
        for f in CaptureReader::new(&data).unwrap().flatten() {
            if let Ok(p) = wire::decode(f.link, f.data, f.wire_len) {
                let m = PacketMeta::new(f.ts, PointId(0), p).at(f.offset as u64);
                let payload = m.payload(&data);
                if area.len() + payload.len() > area.capacity() {
                    area.clear();
                }
                area.extend_from_slice(payload);
                n += payload.len() as u64;
            }
        }
        std::hint::black_box(&area);
        n
    });
    let mut worker = Worker::new(WorkerConfig::default());
    stage("read+decode+hash+copy+worker", &mut || {
        for f in CaptureReader::new(&data).unwrap().flatten() {
            if let Ok(p) = wire::decode(f.link, f.data, f.wire_len) {
                let m = PacketMeta::new(f.ts, PointId(0), p).at(f.offset as u64);
                let payload = m.payload(&data);
                if area.len() + payload.len() > area.capacity() {
                    area.clear();
                }
                let at = area.len();
                area.extend_from_slice(payload);
                worker.process(&m, &area[at..], &mut |_| records += 1);
            }
        }
        worker.finish(&mut |_| records += 1);
        records
    });
    let mut worker = Worker::new(WorkerConfig {
        tls: engine::tls::TlsConfig {
            enabled: false,
            ..Default::default()
        },
        ..WorkerConfig::default()
    });
    stage("read+decode+hash+worker, no TLS", &mut || {
        for f in CaptureReader::new(&data).unwrap().flatten() {
            if let Ok(p) = wire::decode(f.link, f.data, f.wire_len) {
                let m = PacketMeta::new(f.ts, PointId(0), p).at(f.offset as u64);
                worker.process(&m, m.payload(&data), &mut |_| records += 1);
            }
        }
        worker.finish(&mut |_| records += 1);
        records
    });
    // Records for the JSON stage, collected outside any timing.
    let mut worker = Worker::new(WorkerConfig::default());
    for f in CaptureReader::new(&data).unwrap().flatten() {
        if let Ok(p) = wire::decode(f.link, f.data, f.wire_len) {
            let m = PacketMeta::new(f.ts, PointId(0), p).at(f.offset as u64);
            worker.process(&m, m.payload(&data), &mut |r| kept.push(r));
        }
    }
    worker.finish(&mut |r| kept.push(r));
    let names = vec!["bench".to_string()];
    let mut out = Vec::with_capacity(1 << 30);
    let t = Instant::now();
    for r in &kept {
        engine::json::write_record(&mut out, r, &names).unwrap();
    }
    let per = t.elapsed().as_nanos() as f64 / kept.len().max(1) as f64;
    println!(
        "json per record (of {:>6})   {per:>7.0} ns  {:.0} bytes/record",
        kept.len(),
        out.len() as f64 / kept.len().max(1) as f64
    );
}
