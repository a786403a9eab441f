//! The TLS fast path (segments inside application_data records bypass the TLS
//! layer; the next record header is read in place) changes no verdict and no fact:
//! every record, rendered as JSON, is the same with it and without it, on the TLS
//! captures, the corpus and a synthetic mix of long TLS 1.3 sessions.

use engine::capture::CaptureReader;
use engine::session::PointId;
use engine::synth::{write_pcap, SynthConfig};
use engine::tls::TlsConfig;
use engine::wire;
use engine::worker::{PacketMeta, Worker, WorkerConfig};

fn records(data: &[u8], fast_path: bool) -> Vec<u8> {
    let mut w = Worker::new(WorkerConfig {
        tls: TlsConfig {
            fast_path,
            ..TlsConfig::default()
        },
        ..WorkerConfig::default()
    });
    let mut out = Vec::new();
    let names = vec!["p".to_string()];
    let mut emit = |r: engine::verdict::Record| engine::json::record_to(&mut out, &r, &names);
    for f in CaptureReader::new(data).unwrap().flatten() {
        if let Ok(p) = wire::decode(f.link, f.data, f.wire_len) {
            let m = PacketMeta::new(f.ts, PointId(0), p).at(f.offset as u64);
            w.process(&m, m.payload(data), &mut emit);
        }
    }
    w.finish(&mut emit);
    out
}

fn check(name: &str, data: &[u8]) -> usize {
    let (with, without) = (records(data, true), records(data, false));
    assert!(
        with == without,
        "{name}: the fast path changed the records:\n{}\n---\n{}",
        String::from_utf8_lossy(&with),
        String::from_utf8_lossy(&without)
    );
    with.iter().filter(|&&b| b == b'\n').count()
}

#[test]
fn fast_path_changes_nothing_on_shipped_captures() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut n = 0;
    for dir in [
        "tests/captures/tls",
        "tests/corpus/zeek",
        "tests/corpus/suricata-verify",
        "tests/corpus/arkime",
    ] {
        for e in std::fs::read_dir(format!("{root}/{dir}"))
            .unwrap()
            .flatten()
        {
            let p = e.path();
            if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("pcap" | "pcapng")
            ) {
                let data = std::fs::read(&p).unwrap();
                if CaptureReader::new(&data).is_ok() {
                    n += check(&p.display().to_string(), &data);
                }
            }
        }
    }
    assert!(n > 150, "only {n} records compared");
}

#[test]
fn fast_path_changes_nothing_on_synthetic_tls() {
    let mut pcap = Vec::new();
    write_pcap(
        &SynthConfig {
            packets: 200_000,
            concurrent: 500,
            ..SynthConfig::default()
        },
        &mut pcap,
    )
    .unwrap();
    let n = check("synth", &pcap);
    assert!(n > 1_000, "only {n} records compared");
}
