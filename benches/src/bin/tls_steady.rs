//! Per-packet cost of a TLS session once its handshake is over, against the same
//! packets followed at the TCP level only.
//!
//! One real TLS 1.3 session (tests/captures/tls/tls13-ok.pcap, up to its first FIN)
//! goes through a worker, then `PACKETS` more segments of server application data:
//! 16,401-byte application_data records cut into 1,448-byte segments, the client
//! ACKing every second one. Each run is done with TLS followed and with `--no-tls`;
//! the segments are generated in place (a record header where a record starts), and
//! the cost of generating them alone is measured and subtracted.
//!
//! Usage: `tls_steady [PACKETS] [MODE]`, MODE `all` (default: time all three) or
//! `gen`, `tcp`, `tls` (one of them: for `valgrind --tool=callgrind`, whose
//! instruction counts are reproducible).

#![allow(clippy::print_stdout, reason = "a command-line report")]

use std::hint::black_box;
use std::time::Instant;

use engine::capture::CaptureReader;
use engine::session::PointId;
use engine::tls::TlsConfig;
use engine::wire::{self, Packet};
use engine::worker::{PacketMeta, Worker, WorkerConfig};

const SEGMENT: usize = 1448;
const RECORD: usize = 16_401;

fn handshake() -> Vec<(PacketMeta, Vec<u8>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/captures/tls/tls13-ok.pcap"
    );
    let data = std::fs::read(path).expect("read tls13-ok.pcap");
    let mut out = Vec::new();
    for f in CaptureReader::new(&data).expect("capture").flatten() {
        let p = wire::decode(f.link, f.data, f.wire_len).expect("decode");
        if p.flags.fin() {
            break;
        }
        let m = PacketMeta::new(f.ts, PointId(0), p).at(f.offset as u64);
        out.push((m, m.payload(&data).to_vec()));
    }
    out
}

/// Writes segment `k`'s payload into `buf`: a record header wherever a record
/// starts inside it (the rest is left as is: it is never read).
fn fill(buf: &mut [u8; SEGMENT], k: u64) {
    let start = k as usize * SEGMENT;
    let rec = RECORD + 5;
    // From the record that starts at or before this segment: its header may
    // straddle the boundary.
    let mut at = start / rec * rec;
    while at < start + SEGMENT {
        let hdr = [0x17, 0x03, 0x03, (RECORD >> 8) as u8, RECORD as u8];
        for (i, b) in hdr.iter().enumerate() {
            if let Some(x) = (at + i).checked_sub(start).and_then(|o| buf.get_mut(o)) {
                *x = *b;
            }
        }
        at += rec;
    }
}

/// Runs the session; `worker: None` only generates the packets.
fn run(hs: &[(PacketMeta, Vec<u8>)], n: u64, mut worker: Option<Worker>) -> u64 {
    let mut records = 0u64;
    let mut out = |r: engine::verdict::Record| {
        records += 1;
        // The generated stream must have been followed record by record.
        let server = r.tls[0].dirs.iter().map(|d| d.records).max().unwrap_or(0);
        records += u64::from(server) << 32;
        if std::env::var_os("TLS_STEADY_DEBUG").is_some() {
            println!("{:?}", r.tls[0].dirs);
        }
    };
    if let Some(w) = worker.as_mut() {
        for (m, payload) in hs {
            w.process(m, payload, &mut out);
        }
    }
    // The last server data packet and the last client packet are the templates.
    let (server, client) = {
        let first = hs[0].0.side;
        let s = hs
            .iter()
            .rev()
            .find(|(m, _)| m.side != first)
            .expect("server");
        let c = hs
            .iter()
            .rev()
            .find(|(m, _)| m.side == first)
            .expect("client");
        (s.0, c.0)
    };
    let seq0 = server.pkt.seq.wrapping_add(server.pkt.payload_len);
    let mut buf = [0u8; SEGMENT];
    let mut ts = server.ts;
    // The stream continues where the capture left it: a record boundary.
    for k in 0..n {
        ts.0 += 1_000;
        fill(&mut buf, k);
        let seq = seq0.wrapping_add((k as usize * SEGMENT) as u32);
        let data = PacketMeta {
            ts,
            pkt: Packet {
                seq,
                payload_len: SEGMENT as u32,
                payload_captured: SEGMENT as u32,
                ..server.pkt
            },
            ..server
        };
        let ack = PacketMeta {
            ts,
            pkt: Packet {
                ack: seq.wrapping_add(SEGMENT as u32),
                payload_len: 0,
                payload_captured: 0,
                ..client.pkt
            },
            ..client
        };
        match worker.as_mut() {
            Some(w) => {
                w.process(&data, &buf, &mut out);
                if k % 2 == 1 {
                    w.process(&ack, &[], &mut out);
                }
            }
            None => {
                black_box((&data, &ack, &buf));
            }
        }
    }
    if let Some(w) = worker.as_mut() {
        w.finish(&mut out);
    }
    records
}

fn worker(tls: bool) -> Worker {
    Worker::new(WorkerConfig {
        max_sessions: 16,
        tls: TlsConfig {
            enabled: tls,
            ..TlsConfig::default()
        },
        ..WorkerConfig::default()
    })
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(2_000_000, |a| a.parse().expect("PACKETS"));
    let mode = std::env::args().nth(2).unwrap_or_else(|| "all".into());
    let hs = handshake();
    let packets = n + n / 2;
    let time = |name: &str, f: &mut dyn FnMut() -> u64| {
        let t = Instant::now();
        let r = f();
        let ns = t.elapsed().as_nanos() as f64;
        println!(
            "{name:<34} {:>7.2} ns/packet ({} verdicts, {} TLS records)",
            ns / packets as f64,
            r & 0xffff_ffff,
            r >> 32
        );
        ns
    };
    match mode.as_str() {
        "gen" => {
            run(&hs, n, None);
        }
        "tcp" => {
            run(&hs, n, Some(worker(false)));
        }
        "tls" => {
            run(&hs, n, Some(worker(true)));
        }
        _ => {
            // Interleaved, best of 5 each: the machine is shared and noisy.
            let (mut g, mut t, mut s) = (f64::MAX, f64::MAX, f64::MAX);
            for _ in 0..5 {
                g = g.min(time("generate only", &mut || run(&hs, n, None)));
                t = t.min(time("worker, TCP only (--no-tls)", &mut || {
                    run(&hs, n, Some(worker(false)))
                }));
                s = s.min(time("worker, TLS followed", &mut || {
                    run(&hs, n, Some(worker(true)))
                }));
            }
            let per = |x: f64| (x - g) / packets as f64;
            println!(
                "best of 5, generation subtracted: TCP only {:.2} ns/packet, TLS {:.2} ns/packet, ratio {:.3}",
                per(t),
                per(s),
                per(s) / per(t)
            );
        }
    }
}
