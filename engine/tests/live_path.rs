//! The path a live capture takes through the pipeline (several readers, payloads
//! copied into the batches, open sessions ended by `shutdown`) gives the same
//! records as a replay of the same packets.

use std::path::Path;
use std::thread;

use engine::capture::CaptureReader;
use engine::json;
use engine::pipeline::{self, PipelineConfig, Progress, ReplaySource, WorkerLoop};
use engine::session::PointId;
use engine::verdict::{EndReason, Record};
use engine::wire;
use engine::worker::PacketMeta;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn render(records: &[Record]) -> Vec<String> {
    let names = ["p".to_string()];
    let mut out: Vec<String> = records
        .iter()
        .map(|r| {
            let mut buf = Vec::new();
            json::record_to(&mut buf, r, &names);
            String::from_utf8(buf).unwrap()
        })
        .collect();
    out.sort();
    out
}

fn replayed(cfg: &PipelineConfig, data: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    let src = [ReplaySource {
        name: "p".into(),
        data,
        clock_offset: 0,
    }];
    let report = pipeline::replay::<()>(
        cfg,
        &src,
        |r| {
            records.push(*r);
            Ok(())
        },
        &Progress::default(),
    );
    assert!(report.errors.is_empty());
    records
}

/// As a live capture does it: `readers` reader threads, each payload copied. A
/// flow's packets are spread over the readers (a NIC's receive-side scaling need
/// not put both directions of a flow on one queue, and two points are two
/// readers): the workers merge the readers by time. Packets with the same
/// timestamp stay on one reader, so the order among them is the capture's.
fn copied(cfg: &PipelineConfig, data: &[u8], readers: usize) -> Vec<Record> {
    let cfg = PipelineConfig {
        readers,
        batch_bytes: pipeline::MIN_BATCH_BYTES,
        open_at_end: EndReason::Shutdown,
        ..*cfg
    };
    let mut shares: Vec<Vec<(PacketMeta, Vec<u8>)>> = vec![Vec::new(); readers];
    for f in CaptureReader::new(data).unwrap() {
        let f = f.unwrap();
        let Ok(pkt) = wire::decode(f.link, f.data, f.wire_len) else {
            continue;
        };
        let m = PacketMeta::new(f.ts, PointId(0), pkt);
        let payload = m.at(f.offset as u64).payload(data).to_vec();
        let reader = (f.ts.0 / 1_000 % 7919) as usize % readers;
        shares[reader].push((m, payload));
    }
    let (dispatchers, mut loops) = pipeline::build(&cfg);
    let rings: Vec<_> = loops.iter_mut().map(WorkerLoop::take_records).collect();
    let clocks: Vec<_> = loops.iter().map(WorkerLoop::progress).collect();
    let mut records = Vec::new();
    thread::scope(|s| {
        let exporter = s.spawn(|| {
            pipeline::run_exporter::<()>(rings, &clocks, cfg.pairing, |r| {
                records.push(*r);
                Ok(())
            })
        });
        let workers: Vec<_> = loops
            .into_iter()
            .map(|l| s.spawn(move || l.run(&[])))
            .collect();
        for (mut d, share) in dispatchers.into_iter().zip(&shares) {
            s.spawn(move || {
                // The workers get no frames (`run(&[])`): only the copies.
                for (m, payload) in share {
                    d.push_copy(*m, payload);
                }
                d.finish();
            });
        }
        for w in workers {
            w.join().unwrap();
        }
        exporter.join().unwrap();
    });
    records
}

#[test]
fn copied_payloads_and_several_readers_give_the_replays_records() {
    let dir = repo().join("tests/captures/tls");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{} captures", files.len());
    let mut with_sni = 0;
    for path in &files {
        let data = std::fs::read(path).unwrap();
        for workers in [1, 2] {
            let cfg = PipelineConfig {
                workers,
                batch: 4,
                ..PipelineConfig::default()
            };
            let want = replayed(&cfg, &data);
            let want: Vec<String> = render(&want)
                .into_iter()
                .map(|s| s.replace("\"end_of_input\"", "\"shutdown\""))
                .collect();
            for readers in [1, 3] {
                let got = render(&copied(&cfg, &data, readers));
                assert_eq!(
                    got,
                    want,
                    "{} with {workers} workers, {readers} readers",
                    path.display()
                );
            }
            with_sni += want.iter().filter(|r| r.contains("\"sni\":\"")).count();
        }
    }
    // The TLS facts (read from the copied payloads) are in the comparison.
    assert!(with_sni >= 20, "{with_sni} records with an SNI");
}

/// A sensor stopped with sessions open reports them as `shutdown`, not as the end
/// of a capture file.
#[test]
fn open_sessions_end_by_shutdown() {
    let data = std::fs::read(repo().join("tests/captures/demo.pcap")).unwrap();
    let cfg = PipelineConfig::default();
    let replay = replayed(&cfg, &data);
    let live = copied(&cfg, &data, 2);
    let count = |rs: &[Record], e: EndReason| rs.iter().filter(|r| r.end == e).count();
    assert!(count(&replay, EndReason::EndOfInput) > 0);
    assert_eq!(count(&live, EndReason::EndOfInput), 0);
    assert_eq!(
        count(&live, EndReason::Shutdown),
        count(&replay, EndReason::EndOfInput)
    );
    assert_eq!(live.len(), replay.len());
}
