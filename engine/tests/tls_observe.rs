//! The property at the observation level: any segmentation, reordering and
//! retransmission of what a point saw gives the same TLS facts.
//!
//! Each captured segment's payload is cut into random pieces, the pieces shuffled
//! and some sent twice, all at the segment's own timestamp; the facts (hellos,
//! certificate, alerts, record log, counters) must equal those from the capture as
//! it was.

use engine::capture::CaptureReader;
use engine::flow::{FlowKey, Side};
use engine::time::Timestamp;
use engine::tls::memo::Memo;
use engine::tls::observe::{Segment, StreamPool, TlsFacts, TlsPoint};
use engine::tls::pool::BufPool;
use engine::wire;
use proptest::prelude::*;

struct Seg {
    ts: Timestamp,
    side: Side,
    seq: u32,
    syn: bool,
    payload: Vec<u8>,
}

/// The first session's segments of a capture, with its ISNs.
fn segments(path: &str) -> (Vec<Seg>, [Option<u32>; 2]) {
    let data = std::fs::read(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut out = Vec::new();
    let mut isn = [None; 2];
    let mut first_key = None;
    for f in CaptureReader::new(&data).unwrap().flatten() {
        let Ok(p) = wire::decode(f.link, f.data, f.wire_len) else {
            continue;
        };
        let (key, side) = FlowKey::from_packet(p.src, p.dst);
        if *first_key.get_or_insert(key) != key {
            continue;
        }
        let syn = p.flags.syn();
        if syn {
            isn[side.index()].get_or_insert(p.seq);
        }
        let start = p.payload_offset as usize;
        let payload = f.data[start..start + p.payload_captured as usize].to_vec();
        out.push(Seg {
            ts: f.ts,
            side,
            seq: p.seq.wrapping_add(u32::from(syn)),
            syn,
            payload,
        });
    }
    (out, isn)
}

fn observe(segs: &[Seg], isn: [Option<u32>; 2]) -> TlsFacts {
    let mut point = TlsPoint::new();
    let mut streams = StreamPool::new(65_536, 4);
    let mut ooo = BufPool::new(65_536, 16);
    let mut msgs = BufPool::new(65_536, 16);
    let mut memo = Memo::default();
    for s in segs {
        let _ = s.syn;
        point.on_segment(
            &Segment {
                ts: s.ts,
                side: s.side,
                seq: s.seq,
                payload: &s.payload,
                wire_len: s.payload.len() as u32,
                isn: isn[s.side.index()],
                acked_unseen: 0,
            },
            &mut ooo,
            &mut msgs,
            &mut memo,
            &mut streams,
        );
    }
    let facts = point.facts(&memo);
    point.release(&mut ooo, &mut msgs, &mut memo, &mut streams);
    assert_eq!(memo.hellos.live() + memo.leaves.live(), 0, "all given back");
    assert_eq!(ooo.in_use() + msgs.in_use(), 0, "every buffer given back");
    assert_eq!(streams.in_use(), 0, "every stream given back");
    facts
}

/// Cuts every segment into pieces at the given cut points (modulo its length),
/// shuffles each segment's pieces and repeats some.
fn reshape(segs: &[Seg], cuts: &[u16], order: &[u16], dups: &[u16]) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut k = 0;
    for s in segs {
        if s.payload.len() < 2 {
            out.push(Seg {
                payload: s.payload.clone(),
                ..*s
            });
            continue;
        }
        let mut at: Vec<usize> = (0..3)
            .map(|i| usize::from(cuts[(k + i) % cuts.len()]) % s.payload.len())
            .collect();
        k += 3;
        at.push(0);
        at.push(s.payload.len());
        at.sort_unstable();
        at.dedup();
        let mut pieces: Vec<Seg> = at
            .windows(2)
            .map(|w| Seg {
                ts: s.ts,
                side: s.side,
                seq: s.seq.wrapping_add(w[0] as u32),
                syn: false,
                payload: s.payload[w[0]..w[1]].to_vec(),
            })
            .collect();
        let n = pieces.len();
        for i in 0..n {
            pieces.swap(i, usize::from(order[(k + i) % order.len()]) % n);
        }
        for d in dups.iter().take(2) {
            let p = &pieces[usize::from(*d) % n];
            let copy = Seg {
                payload: p.payload.clone(),
                ..*p
            };
            pieces.push(copy);
        }
        out.extend(pieces);
    }
    out
}

const CAPTURES: &[&str] = &[
    "tests/corpus/arkime/badcurveball.pcap",
    "tests/corpus/zeek/hrr.pcap",
    "tests/corpus/suricata-verify/ja4-tls_input.pcap",
    "tests/corpus/zeek/certificate-request-failed.pcap",
    "tests/captures/tls/tls12-client-rejects-ca.pcap",
    "tests/captures/tls/gnutls13-client-rejects-ca.pcap",
];

#[test]
fn facts_are_not_empty() {
    for c in CAPTURES {
        let (segs, isn) = segments(c);
        let f = observe(&segs, isn);
        assert!(f.client_hello.is_some() && f.server_hello.is_some(), "{c}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn prop_any_segmentation_reordering_and_retransmission_same_facts(
        which in 0..CAPTURES.len(),
        cuts in proptest::collection::vec(any::<u16>(), 1..16),
        order in proptest::collection::vec(any::<u16>(), 1..16),
        dups in proptest::collection::vec(any::<u16>(), 0..3),
    ) {
        let (segs, isn) = segments(CAPTURES[which]);
        let whole = observe(&segs, isn);
        let reshaped = reshape(&segs, &cuts, &order, &dups);
        prop_assert_eq!(observe(&reshaped, isn), whole);
    }
}
