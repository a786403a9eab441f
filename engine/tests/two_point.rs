//! Two capture points around a middlebox, from synthetic packets through a real
//! worker: forged and absorbed RSTs, copies reordered across the points, a copy lost
//! at one point's capture, and the match window.

use engine::correlate::{CorrelateConfig, Tamper};
use engine::flow::Endpoint;
use engine::session::{PointId, Role};
use engine::time::{Nanos, Timestamp};
use engine::verdict::{PanReason, Record, Verdict};
use engine::wire::{Packet, TcpFlags};
use engine::worker::{PacketMeta, Worker, WorkerConfig, WorkerStats};

const INSIDE: PointId = PointId(0);
const OUTSIDE: PointId = PointId(1);
const MS: u64 = 1_000_000;

fn client() -> Endpoint {
    Endpoint::v4([198, 18, 5, 1], 40_001)
}
fn server() -> Endpoint {
    Endpoint::v4([198, 18, 6, 2], 443)
}

/// One packet: who sent it, where it was seen, when (ms), flags, TTL, payload.
#[derive(Clone, Copy)]
struct P {
    at: PointId,
    ms: u64,
    from_client: bool,
    flags: u8,
    seq: u32,
    ack: u32,
    ttl: u8,
    len: u32,
}

fn p(at: PointId, ms: u64, from_client: bool, flags: u8, seq: u32, ack: u32, len: u32) -> P {
    // The server's packets cross the middlebox toward the client: one hop less
    // inside; the client's, one hop less outside.
    let ttl = match (from_client, at) {
        (true, OUTSIDE) | (false, INSIDE) => 63,
        _ => 64,
    };
    P {
        at,
        ms,
        from_client,
        flags,
        seq,
        ack,
        ttl,
        len,
    }
}

const SYN: u8 = TcpFlags::SYN;
const SYNACK: u8 = TcpFlags::SYN | TcpFlags::ACK;
const ACK: u8 = TcpFlags::ACK;
const PSH: u8 = TcpFlags::ACK | TcpFlags::PSH;
const RST: u8 = TcpFlags::RST;
const FIN: u8 = TcpFlags::FIN | TcpFlags::ACK;

/// A handshake and one request (100 bytes) and answer (300 bytes), at both points,
/// the outside copy 1 ms after the inside one for the client's packets and the
/// reverse for the server's.
fn opening() -> Vec<P> {
    let mut v = Vec::new();
    for (t, from_client, flags, seq, ack, len) in [
        (0, true, SYN, 1000, 0, 0),
        (10, false, SYNACK, 5000, 1001, 0),
        (20, true, ACK, 1001, 5001, 0),
        (21, true, PSH, 1001, 5001, 100),
        (40, false, PSH, 5001, 1101, 300),
    ] {
        let (first, second) = if from_client {
            (INSIDE, OUTSIDE)
        } else {
            (OUTSIDE, INSIDE)
        };
        v.push(p(first, t, from_client, flags, seq, ack, len));
        v.push(p(second, t + 1, from_client, flags, seq, ack, len));
    }
    v
}

fn run(packets: &[P], cfg: CorrelateConfig) -> Vec<Record> {
    run_stats(packets, cfg).0
}

fn run_stats(packets: &[P], cfg: CorrelateConfig) -> (Vec<Record>, WorkerStats) {
    let mut w = Worker::new(WorkerConfig {
        points: 2,
        correlate: cfg,
        ..WorkerConfig::default()
    });
    let mut out = Vec::new();
    let mut sorted = packets.to_vec();
    sorted.sort_by_key(|x| x.ms);
    for x in sorted {
        let (src, dst) = if x.from_client {
            (client(), server())
        } else {
            (server(), client())
        };
        let pkt = Packet {
            src,
            dst,
            seq: x.seq,
            ack: x.ack,
            flags: TcpFlags(x.flags),
            ttl: x.ttl,
            ip_id: Some(if x.flags == RST && x.ttl == 64 { 0 } else { 7 }),
            payload_len: x.len,
            wire_len: 54 + x.len,
            ..Packet::default()
        };
        let m = PacketMeta::new(Timestamp(1_700_000_000_000_000_000 + x.ms * MS), x.at, pkt);
        w.process(&m, &[], &mut |r| out.push(r));
    }
    w.finish(&mut |r| out.push(r));
    (out, w.stats())
}

fn one(packets: &[P]) -> Record {
    let mut r = run(packets, CorrelateConfig::default());
    assert_eq!(r.len(), 1, "one session");
    r.remove(0)
}

#[test]
fn rst_at_both_points_is_not_tampered() {
    let mut v = opening();
    // The server resets; the RST crosses the middlebox.
    v.push(p(OUTSIDE, 50, false, RST, 5301, 0, 0));
    v.push(p(INSIDE, 51, false, RST, 5301, 0, 0));
    let r = one(&v);
    assert_eq!(r.verdict, Verdict::ResetByServer);
    assert_eq!(r.compare.unmatched().count(), 0);
    assert_eq!(r.compare.points, Some((INSIDE, OUTSIDE)));
}

#[test]
fn copies_reordered_across_points_still_match() {
    let mut v = opening();
    // The inside copy is stamped *before* the outside one although it crossed
    // after it (clock jitter between the points): within the window, a match.
    v.push(p(INSIDE, 50, false, RST, 5301, 0, 0));
    v.push(p(OUTSIDE, 53, false, RST, 5301, 0, 0));
    let r = one(&v);
    assert_eq!(r.verdict, Verdict::ResetByServer);
    assert_eq!(r.compare.unmatched().count(), 0);
}

#[test]
fn rst_seen_inside_only_was_forged_by_the_middlebox() {
    let mut v = opening();
    // iptables REJECT --reject-with tcp-reset: an RST in the server's name with the
    // firewall's own TTL (64: the server's packets arrive inside with 63).
    let mut forged = p(INSIDE, 50, false, RST, 5301, 0, 0);
    forged.ttl = 64;
    v.push(forged);
    // The server, unaware, closes much later: it went on.
    v.push(p(OUTSIDE, 1500, false, FIN, 5301, 1101, 0));
    let r = one(&v);
    assert_eq!(r.verdict, Verdict::MiddleboxReset);
    assert_eq!(r.pan_end_reason, Some(PanReason::PolicyDeny));
    let u: Vec<_> = r.compare.unmatched().copied().collect();
    let rst = u.iter().find(|u| u.rst).expect("the forged RST");
    assert_eq!(
        (rst.point, rst.other, rst.toward, rst.tamper),
        (INSIDE, OUTSIDE, Role::Client, Tamper::Forged)
    );
    assert!(rst.confident(), "TTL 64 where the server's packets had 63");
    assert!(rst.went_on, "the server sent a FIN afterwards");
    // The server's FIN never reached the client: absorbed.
    let fin = u
        .iter()
        .find(|u| !u.rst)
        .expect("the FIN seen outside only");
    assert_eq!(
        (fin.point, fin.toward, fin.tamper),
        (OUTSIDE, Role::Client, Tamper::Absorbed)
    );
}

#[test]
fn rst_from_the_client_that_never_left_the_middlebox_was_absorbed() {
    let mut v = opening();
    v.push(p(INSIDE, 50, true, RST, 1101, 0, 0));
    // The server keeps sending outside: it never got the reset.
    v.push(p(OUTSIDE, 200, false, PSH, 5301, 1101, 100));
    let r = one(&v);
    let u: Vec<_> = r.compare.unmatched().copied().collect();
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!(
        (u[0].point, u[0].toward, u[0].tamper),
        (INSIDE, Role::Server, Tamper::Absorbed)
    );
    assert!(u[0].confident(), "the server went on outside");
    // Not forged: the client did send it. The verdict stays the client's reset.
    assert_eq!(r.verdict, Verdict::ResetByClient);
}

#[test]
fn a_copy_lost_at_one_capture_is_reported_with_medium_confidence() {
    let mut v = opening();
    // The server's real RST (TTL as its other packets inside), whose outside copy
    // the outside capture dropped: nothing tells it from a forgery that copies the
    // TTL, so it is reported, but not with high confidence.
    v.push(p(INSIDE, 51, false, RST, 5301, 0, 0));
    let r = one(&v);
    let u: Vec<_> = r.compare.unmatched().copied().collect();
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!(u[0].tamper, Tamper::Forged);
    assert!(!u[0].confident());
    let text: Vec<String> = r
        .evidence
        .iter()
        .map(|e| e.render(&|p: PointId| ["inside", "outside"][usize::from(p.0)].to_string()))
        .collect();
    assert!(
        text[0].contains("or its copy was lost at outside's capture"),
        "{text:?}"
    );
}

#[test]
fn a_data_packet_lost_at_one_point_changes_nothing() {
    let mut v = opening();
    // The outside capture lost the client's request: only inside has it.
    v.retain(|x| !(x.at == OUTSIDE && x.from_client && x.len == 100));
    v.push(p(INSIDE, 60, true, FIN, 1101, 5301, 0));
    v.push(p(OUTSIDE, 61, true, FIN, 1101, 5301, 0));
    v.push(p(OUTSIDE, 70, false, FIN, 5301, 1102, 0));
    v.push(p(INSIDE, 71, false, FIN, 5301, 1102, 0));
    let r = one(&v);
    assert_eq!(r.verdict, Verdict::Ok);
    assert_eq!(r.compare.unmatched().count(), 0);
}

#[test]
fn the_match_window_decides_what_is_a_copy() {
    let mut v = opening();
    v.push(p(OUTSIDE, 50, false, RST, 5301, 0, 0));
    v.push(p(INSIDE, 130, false, RST, 5301, 0, 0));
    // 80 ms apart: no copy within the default 50 ms...
    let r = one(&v);
    assert_eq!(r.compare.unmatched().filter(|u| u.rst).count(), 2);
    // ... one within a 100 ms window.
    let wide = CorrelateConfig {
        window: Nanos::from_millis(100),
        ..CorrelateConfig::default()
    };
    let r = run(&v, wide);
    assert_eq!(r[0].compare.unmatched().count(), 0);
    assert_eq!(r[0].verdict, Verdict::ResetByServer);
}

#[test]
fn client_side_point_decides_forged_or_absorbed() {
    let mut v = opening();
    v.push(p(OUTSIDE, 50, true, RST, 1101, 0, 0));
    // Seen outside only, from the client: with inside as the client side it was
    // forged toward the server; with the points the other way round, absorbed.
    let r = one(&v);
    let u = r.compare.unmatched().next().copied().unwrap();
    assert_eq!((u.toward, u.tamper), (Role::Server, Tamper::Forged));
    let swapped = CorrelateConfig {
        client_side: OUTSIDE,
        ..CorrelateConfig::default()
    };
    let r = run(&v, swapped);
    let u = r[0].compare.unmatched().next().copied().unwrap();
    assert_eq!((u.toward, u.tamper), (Role::Server, Tamper::Absorbed));
}

#[test]
fn one_point_sessions_are_not_compared() {
    let v: Vec<P> = opening().into_iter().filter(|x| x.at == INSIDE).collect();
    let mut v = v;
    v.push(p(INSIDE, 50, false, RST, 5301, 0, 0));
    let r = one(&v);
    assert_eq!(r.compare.points, None);
    assert_eq!(r.verdict, Verdict::ResetByServer);
}

// One point only: signs of a forged RST (`suspect_rst`), never a certainty.

fn inside_only(v: Vec<P>) -> Vec<P> {
    v.into_iter().filter(|x| x.at == INSIDE).collect()
}

#[test]
fn one_point_clean_rst_is_not_suspect() {
    let mut v = inside_only(opening());
    // The server resets at its next sequence number, with its usual TTL.
    v.push(p(INSIDE, 50, false, RST, 5301, 0, 0));
    let r = one(&v);
    assert_eq!(r.verdict, Verdict::ResetByServer);
    assert!(r.suspect.iter().all(Option::is_none), "{:?}", r.suspect);
}

#[test]
fn one_point_rst_with_another_ttl_is_suspect() {
    use engine::correlate::{sign, Suspicion};
    let mut v = inside_only(opening());
    let mut forged = p(INSIDE, 50, false, RST, 5301, 0, 0);
    forged.ttl = 64; // the server's packets arrive with 63
    v.push(forged);
    let r = one(&v);
    let s = r.suspect.iter().flatten().next().expect("suspect");
    assert_eq!((s.from, s.signs), (Role::Server, sign::TTL));
    assert_eq!(s.confidence(), Suspicion::Medium);
    assert_eq!(
        r.verdict,
        Verdict::ResetByServer,
        "signs do not change the verdict"
    );

    // And the "resetting" server sending data after it: high.
    v.push(p(INSIDE, 60, false, PSH, 5301, 1101, 100));
    let r = one(&v);
    let s = r.suspect.iter().flatten().next().expect("suspect");
    assert_eq!(s.signs, sign::TTL | sign::DATA_AFTER);
    assert_eq!(s.confidence(), Suspicion::High);
}

#[test]
fn one_point_rst_burst_with_stepping_sequence_numbers_is_suspect() {
    use engine::correlate::sign;
    let mut v = inside_only(opening());
    // Three guesses within a millisecond, 1460 apart; the first one off SND.NXT.
    for (k, seq) in [5301u32 + 1460, 5301 + 2920, 5301 + 4380]
        .into_iter()
        .enumerate()
    {
        v.push(p(INSIDE, 50 + k as u64 / 2, false, RST, seq, 0, 0));
    }
    let r = one(&v);
    let s = r.suspect.iter().flatten().next().expect("suspect");
    assert_eq!(s.signs, sign::STEPPING | sign::SEQ_OFF);
    // A closed end answering late segments one by one (seq, then seq + 1 after its
    // FIN) is not a burst of guesses.
    let mut v = inside_only(opening());
    v.push(p(INSIDE, 50, true, RST, 1101, 0, 0));
    v.push(p(INSIDE, 50, true, RST, 1102, 0, 0));
    let r = one(&v);
    assert!(r.suspect.iter().all(Option::is_none), "{:?}", r.suspect);
}

#[test]
fn an_rst_found_forged_by_two_points_is_not_also_a_suspect() {
    let mut v = opening();
    let mut forged = p(INSIDE, 50, false, RST, 5301, 0, 0);
    forged.ttl = 64;
    v.push(forged);
    let r = one(&v);
    assert_eq!(r.verdict, Verdict::MiddleboxReset);
    assert!(r.suspect.iter().all(Option::is_none));
}

#[test]
fn a_forged_rst_after_the_session_was_reset_does_not_make_middlebox_reset() {
    let mut v = opening();
    // The server's real RST crosses the middlebox...
    v.push(p(OUTSIDE, 50, false, RST, 5301, 0, 0));
    v.push(p(INSIDE, 51, false, RST, 5301, 0, 0));
    // ... and 100 ms later the firewall answers the client's in-flight data with
    // one of its own.
    let mut forged = p(INSIDE, 150, false, RST, 5301, 0, 0);
    forged.ttl = 64;
    v.push(forged);
    let r = one(&v);
    assert_eq!(r.verdict, Verdict::ResetByServer, "the real RST ended it");
    assert!(
        r.compare
            .unmatched()
            .any(|u| u.rst && u.tamper == Tamper::Forged),
        "the forged one is still reported"
    );
}

#[test]
fn data_sent_before_an_ends_own_rst_is_not_data_after_it() {
    use engine::correlate::sign;
    let mut v = inside_only(opening());
    // The client resets; the server's in-flight data arrives; then the server's
    // kernel answers with its own RST.
    v.push(p(INSIDE, 50, true, RST, 1101, 0, 0));
    v.push(p(INSIDE, 51, false, PSH, 5301, 1101, 100));
    v.push(p(INSIDE, 52, false, RST, 5401, 0, 0));
    let r = one(&v);
    let server = r.suspect.iter().flatten().find(|s| s.from == Role::Server);
    assert!(
        server.is_none_or(|s| s.signs & sign::DATA_AFTER == 0),
        "{server:?}"
    );
}

#[test]
fn an_rst_forged_beyond_both_points_is_still_a_suspect() {
    use engine::correlate::sign;
    let mut v = opening();
    // Forged upstream of the outside point: it crosses the middlebox like a real
    // one, but with a TTL unlike the server's (50 outside, 49 inside).
    let mut out = p(OUTSIDE, 50, false, RST, 5301, 0, 0);
    out.ttl = 50;
    let mut ins = p(INSIDE, 51, false, RST, 5301, 0, 0);
    ins.ttl = 49;
    v.push(out);
    v.push(ins);
    let r = one(&v);
    assert_eq!(r.compare.unmatched().count(), 0, "seen at both points");
    let s = r.suspect.iter().flatten().next().expect("suspect");
    assert_eq!((s.point, s.signs), (OUTSIDE, sign::TTL));
}

// Several RSTs from one end: every one is looked for at the other point, not only
// the first and the last.

#[test]
fn a_middle_rst_is_a_copy_of_the_other_points_last() {
    let mut v = opening();
    // The server answers four late client segments with an RST each, 100 ms apart
    // (its own, at SND.NXT, stepping with nothing): the middlebox passes the first
    // three; the outside capture has all four, the inside one only those three.
    for (k, ms) in [50u64, 150, 250, 350].into_iter().enumerate() {
        v.push(p(OUTSIDE, ms, false, RST, 5301, 0, 0));
        if k < 3 {
            v.push(p(INSIDE, ms + 1, false, RST, 5301, 0, 0));
        }
    }
    let r = one(&v);
    let u: Vec<_> = r.compare.unmatched().copied().collect();
    // Only the fourth is missing inside. The inside's last (251) is the copy of the
    // outside's third, which is neither its first nor its last.
    assert_eq!(u.len(), 1, "{u:#?}");
    assert_eq!(
        (u[0].point, u[0].seg.ts.0 % 1_000_000_000 / MS),
        (OUTSIDE, 350)
    );
    assert_eq!(u[0].tamper, Tamper::Absorbed);
}

#[test]
fn a_forged_rst_between_real_ones_is_found() {
    let mut v = opening();
    // Real RSTs from the server cross the middlebox at 50 and 250 ms; between them,
    // the middlebox forges one of its own toward the client (TTL 64).
    v.push(p(OUTSIDE, 50, false, RST, 5301, 0, 0));
    v.push(p(INSIDE, 51, false, RST, 5301, 0, 0));
    let mut forged = p(INSIDE, 150, false, RST, 5301, 0, 0);
    forged.ttl = 64;
    v.push(forged);
    v.push(p(OUTSIDE, 250, false, RST, 5301, 0, 0));
    v.push(p(INSIDE, 251, false, RST, 5301, 0, 0));
    let r = one(&v);
    let u: Vec<_> = r.compare.unmatched().copied().collect();
    assert_eq!(u.len(), 1, "{u:#?}");
    assert_eq!((u[0].point, u[0].tamper), (INSIDE, Tamper::Forged));
    assert_eq!(u[0].seg.ttl, 64);
    assert_eq!(r.verdict, Verdict::ResetByServer, "a real RST ended it");
}

#[test]
fn rsts_beyond_four_per_end_and_point_are_counted_not_compared() {
    let mut v = opening();
    // Six RSTs at both points: the first three and the last are compared; the 4th
    // and 5th are not kept (counted, at each point), and nothing is unmatched.
    for ms in [50u64, 150, 250, 350, 450, 550] {
        v.push(p(OUTSIDE, ms, false, RST, 5301, 0, 0));
        v.push(p(INSIDE, ms + 1, false, RST, 5301, 0, 0));
    }
    let (r, stats) = run_stats(&v, CorrelateConfig::default());
    assert_eq!(r[0].compare.unmatched().count(), 0);
    assert_eq!(stats.rsts_not_compared, 4);
}
